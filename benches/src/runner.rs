//! Time-bounded multi-threaded driver.
//!
//! Every worker does its setup, then waits on a barrier with the main thread. The main
//! thread starts the clock when the barrier opens, sleeps `--seconds`, and raises the stop
//! flag. Workers poll the flag every few ops, record the instant they stopped
//! ([`Ctl::done`]) and only then tear down, so neither setup nor teardown is timed. The
//! measured time runs from the barrier to the last worker's `done`.
//!
//! [`run_counted`] is the same without the clock's stop: each worker does a fixed amount of
//! work, and the measured time runs from the barrier to the last worker's `done`.

use std::cell::Cell;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Per-worker handle onto the shared start barrier and stop flag.
pub struct Ctl<'a> {
    barrier: &'a Barrier,
    stop: &'a AtomicBool,
    end: Cell<Option<Instant>>,
}

impl Ctl<'_> {
    /// Ends setup: blocks until every worker is ready and the clock starts. Call once.
    pub fn ready(&self) {
        self.barrier.wait();
    }

    /// Whether the measured period is over.
    #[inline]
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Marks the end of this worker's measured work (before its teardown).
    pub fn done(&self) {
        self.end.set(Some(Instant::now()));
    }
}

/// Outcome of a timed run.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub ops: u64,
    pub seconds: f64,
}

/// Runs `work(thread_index, ctl)` on `threads` threads for about `seconds` of measured
/// time; `work` returns its op count. It must call `ctl.ready()` exactly once.
pub fn run_timed<F>(threads: usize, seconds: f64, work: F) -> Timed
where
    F: Fn(usize, &Ctl<'_>) -> u64 + Sync,
{
    run(threads, Some(seconds), work)
}

/// Runs `work(thread_index, ctl)` on `threads` threads, each doing a fixed amount of work
/// (the stop flag is never raised); `work` returns its op count and must call `ctl.ready()`
/// once, then `ctl.done()` when its measured work is over.
pub fn run_counted<F>(threads: usize, work: F) -> Timed
where
    F: Fn(usize, &Ctl<'_>) -> u64 + Sync,
{
    run(threads, None, work)
}

fn run<F>(threads: usize, seconds: Option<f64>, work: F) -> Timed
where
    F: Fn(usize, &Ctl<'_>) -> u64 + Sync,
{
    let barrier = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, stop, work) = (&barrier, &stop, &work);
                thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn_scoped(s, move || {
                        let ctl = Ctl {
                            barrier,
                            stop,
                            end: Cell::new(None),
                        };
                        let ops = work(i, &ctl);
                        (ops, ctl.end.get().unwrap_or_else(Instant::now))
                    })
                    .expect("failed to spawn a worker thread")
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        if let Some(seconds) = seconds {
            thread::sleep(Duration::from_secs_f64(seconds));
            stop.store(true, Ordering::Relaxed);
        }
        let mut ops = 0;
        let mut end = start;
        for h in handles {
            let (o, e) = h.join().expect("worker thread panicked");
            ops += o;
            end = end.max(e);
        }
        Timed {
            ops,
            seconds: (end - start).as_secs_f64(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ops_of_all_threads_and_times_the_run() {
        let t = run_timed(3, 0.05, |i, ctl| {
            ctl.ready();
            while !ctl.stopped() {
                std::hint::spin_loop();
            }
            ctl.done();
            i as u64 + 1
        });
        assert_eq!(t.ops, 1 + 2 + 3);
        assert!(t.seconds >= 0.05 && t.seconds < 5.0, "{}", t.seconds);
    }

    #[test]
    fn counted_run_waits_for_the_work_not_the_clock() {
        let t = run_counted(2, |i, ctl| {
            ctl.ready();
            assert!(!ctl.stopped());
            thread::sleep(Duration::from_millis(20 * (i as u64 + 1)));
            ctl.done();
            10
        });
        assert_eq!(t.ops, 20);
        // The slower worker sleeps 40 ms after it is ready; the clock starts once both are,
        // a little after that worker's sleep began.
        assert!(t.seconds >= 0.03 && t.seconds < 5.0, "{}", t.seconds);
    }
}
