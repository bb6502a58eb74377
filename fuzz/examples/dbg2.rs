// Does blaze's own sender produce a valid stream for an empty message with context takeover?
use blaze_proto::bytes::BytesMut;
use blaze_proto::deflate::{DeflateConfig, DeflateParams};
use blaze_proto::{Config, Connection, Message, Role};
use std::time::Instant;
fn main() {
    let now = Instant::now();
    let params = DeflateParams::default(); // context takeover both ways
    let cfg = DeflateConfig::default().threshold(0);
    let mut client = Connection::new(Role::Client, Config::default(), now);
    let mut server = Connection::new(Role::Server, Config::default(), now);
    client.enable_deflate(&params, &cfg);
    server.enable_deflate(&params, &cfg);
    for m in ["hello hello hello", "", "after"] { client.send(Message::text(m)).unwrap(); }
    let mut wire = BytesMut::from(&client.transmit_bytes()[..]);
    let mut all = Vec::new();
    loop { let b = client.transmit_bytes().to_vec(); if b.is_empty() {break;} client.advance_transmit(b.len()); all.extend(b); }
    println!("client wire: {:02x?}", all);
    wire.clear(); wire.extend_from_slice(&all);
    server.handle_read(&mut wire, now);
    while let Some(e) = server.poll_event() { println!("{e:?}"); }
}
