fn main() {
    let mut v = vec![];
    for e in std::fs::read_dir(std::env::args().nth(1).unwrap()).unwrap() {
        let p = e.unwrap().path();
        let d = std::fs::read(&p).unwrap();
        let t = std::time::Instant::now();
        blaze_fuzz::inflate::inflate(&d);
        v.push((t.elapsed(), p.display().to_string(), d.len()));
    }
    v.sort();
    let total: std::time::Duration = v.iter().map(|x| x.0).sum();
    println!("total {total:?} over {}", v.len());
    for x in v.iter().rev().take(8) { println!("{:?} {} {}", x.0, x.1, x.2); }
}
