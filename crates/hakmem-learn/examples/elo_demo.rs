//! Drives an `Evo<4>` with synthetic measurement windows and prints the report.
//!
//! Phase 1: small requests; candidate 2 ("lazy") is best on throughput, faults and RSS.
//! Phase 2: the size mix jumps to multi-MiB blocks, where candidate 1 ("eager") is best:
//! the lifecycle re-learns and freezes on the new winner.
//!
//! Run with `cargo run -p hakmem-learn --example elo_demo`.

use hakmem_learn::report::FixedBuf;
use hakmem_learn::{Evo, EvoParams, Phase, Rng, Window, size_bucket, write_report};

const NAMES: [&str; 4] = ["base", "eager", "lazy", "hybrid"];

/// (ops per CPU-second, page faults per window, RSS bytes) of each candidate.
type Profile = [(f64, f64, f64); 4];

const SMALL: Profile = [
    (1.00e6, 900.0, 96e6),
    (1.05e6, 850.0, 110e6),
    (1.40e6, 400.0, 80e6),
    (1.10e6, 700.0, 90e6),
];

const BIG: Profile = [
    (2.0e5, 9000.0, 600e6),
    (4.5e5, 2500.0, 420e6),
    (2.2e5, 8000.0, 650e6),
    (2.5e5, 7000.0, 580e6),
];

/// One window of `profile` for `candidate`, ±5% noise, all requests of `size` bytes.
fn measure(profile: &Profile, candidate: usize, size: usize, rng: &mut Rng) -> Window {
    let mut jitter = || 0.95 + 0.1 * rng.next_f64();
    let (ops, faults, rss) = profile[candidate];
    let mut w = Window::new(
        (ops * jitter()) as u64,
        1_000_000_000,
        (faults * jitter()) as u64,
        (rss * jitter()) as u64,
    );
    w.size_hist[size_bucket(size)] = 10_000;
    w
}

fn main() {
    let mut evo: Evo<4> = Evo::new(EvoParams::default());
    let mut rng = Rng::new(2024);
    let mut candidate = evo.current();
    let mut trace = String::new();

    for (profile, size, windows) in [(&SMALL, 4096, 60), (&BIG, 8 << 20, 60)] {
        for _ in 0..windows {
            let w = measure(profile, candidate, size, &mut rng);
            let next = evo.on_window(&w);
            trace.push(match evo.phase() {
                Phase::Learn => 'L',
                Phase::Frozen => 'F',
                Phase::Canary => 'C',
            });
            trace.push(char::from(b'0' + next as u8));
            trace.push(' ');
            candidate = next;
        }
        trace.push('\n');
    }
    println!("phase and next candidate after each window:\n{trace}");

    // Formatted without allocating, as the allocator itself would.
    let mut buf = FixedBuf::<4096>::new();
    write_report(&mut buf, &evo, &NAMES).expect("FixedBuf never fails");
    print!("{}", buf.as_str());
    assert_eq!(evo.winner(), 1, "eager wins the big-block workload");
}
