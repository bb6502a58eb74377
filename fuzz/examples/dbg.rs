use blaze_fuzz::inflate::*;
fn main() {
    let data = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let ctl: [u8; 4] = data[..4].try_into().unwrap();
    let setup = Setup::parse(ctl);
    let records = parse_records(&data[4..]);
    for r in &records { println!("{:?}", Record { raw: r.raw.iter().take(20).copied().collect(), ..r.clone() }); }
    let (wire, expected) = build(&setup, &records);
    println!("{setup:?}\nwire {} bytes, expected {} msgs corrupted {} too_big {}", wire.len(), expected.messages.len(), expected.corrupted, expected.too_big);
    println!("{:02x?}", &wire[..wire.len().min(40)]);
    reference(&wire);
}
#[allow(dead_code)]
fn bisect(ctl: [u8;4], records: &[Record]) {
    for n in 1..=records.len() {
        let data = encode_records(ctl, &records[..n]);
        let r = std::panic::catch_unwind(|| blaze_fuzz::inflate::inflate(&data));
        println!("first {n}: {}", if r.is_ok() {"ok"} else {"PANIC"});
        if r.is_err() { break; }
    }
}
#[allow(dead_code)]
fn reference(wire: &[u8]) {
    use blaze_proto::bytes::BytesMut;
    use blaze_proto::frame::{FrameDecoder, Role, OpCode};
    let mut d = FrameDecoder::new(Role::Server, usize::MAX);
    d.allow_rsv1(true);
    let mut buf = BytesMut::from(wire);
    let mut inf = flate2::Decompress::new(false);
    let mut msg: Vec<u8> = Vec::new();
    let mut compressed = false;
    let mut idx = 0;
    while let Ok(Some(f)) = d.decode(&mut buf) {
        if f.header.opcode.is_control() { continue; }
        if f.header.opcode != OpCode::Continuation { compressed = f.header.rsv1; msg.clear(); }
        msg.extend_from_slice(&f.payload);
        println!("  frame {:?} fin {} rsv1 {} len {}", f.header.opcode, f.header.fin, f.header.rsv1, f.payload.len());
        if f.header.fin {
            if compressed {
                msg.extend_from_slice(&[0,0,0xff,0xff]);
                let mut out = Vec::with_capacity(1 << 21);
                let r = inf.decompress_vec(&msg, &mut out, flate2::FlushDecompress::Sync);
                println!("msg {idx}: {r:?} in {} out {}", msg.len(), out.len());
            } else { println!("msg {idx}: plain {}", msg.len()); }
            idx += 1;
        }
    }
}
