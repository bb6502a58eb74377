mod common;
use common::*;
use blaze_proto::frame::OpCode;
use blaze_proto::{Event, Connection};
use blaze_proto::deflate::*;

fn run(payload: &[u8], piece: usize, max: usize) -> Vec<Event> {
    let (mut s, now) = deflate_server(quiet().max_message_size(max), &no_context_params(), &DeflateConfig::default());
    let wire = client_frame_with(hdr(OpCode::Binary, true, true), payload);
    let cuts: Vec<usize> = (1..wire.len()).step_by(piece).collect();
    let _ : &Connection = &s;
    feed_cut(&mut s, &wire, &cuts, now)
}

#[test]
fn scratch() {
    let mut x: u64 = 0x1234567;
    let mut found = 0;
    for n in 0..200000 {
        let len = 1 + (n % 60);
        let payload: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
        for max in [64usize, 1<<20] {
        let a = run(&payload, 10000, max);
        let msgs = |e: &[Event]| e.iter().filter(|e| matches!(e, Event::Message(_))).count();
        for piece in [1, 3] {
            let b = run(&payload, piece, max);
            if msgs(&a) != msgs(&b) {
                println!("payload {:x?} max {max} piece {piece}\n whole {:?}\n split {:?}", payload, a.iter().map(|e| match e { Event::Message(m) => format!("msg {}", m.len()), e => format!("{e:?}") }).collect::<Vec<_>>(), b.iter().map(|e| match e { Event::Message(m) => format!("msg {}", m.len()), e => format!("{e:?}") }).collect::<Vec<_>>());
                found += 1;
            }
        }
        }
        if found >= 3 { break; }
    }
}
