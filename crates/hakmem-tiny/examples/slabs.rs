//! The Tiny tier on its own: blocks of up to 1 KiB from this thread's slabs, a local free, and a
//! free from another thread (a remote free, collected by the owner later).
//! `cargo run --release -p hakmem-tiny --example slabs`

fn main() {
    let blocks: Vec<usize> = (0..1000)
        .map(|i| hakmem_tiny::alloc(8 + i % 1000) as usize)
        .collect();
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: each block is live and at least 8 + i % 1000 bytes long.
        unsafe {
            assert!(hakmem_tiny::usable_size(p as *mut u8) >= 8 + i % 1000);
            (p as *mut u8).write(i as u8);
        }
    }
    let (mine, theirs) = blocks.split_at(500);
    for &p in mine {
        // SAFETY: live Tiny blocks of this thread, freed once.
        unsafe { hakmem_tiny::free(p as *mut u8) };
    }
    let theirs = theirs.to_vec();
    std::thread::spawn(move || {
        for p in theirs {
            // SAFETY: live Tiny blocks of the main thread, freed once, remotely.
            unsafe { hakmem_tiny::free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
    // The owner collects the remote frees when its slabs run dry.
    let again: Vec<usize> = (0..5000).map(|_| hakmem_tiny::alloc(64) as usize).collect();
    let c = &hakmem_tiny::COUNTERS;
    println!(
        "{} blocks; tiny.carved={} tiny.slabs={} tiny.remote={}",
        again.len(),
        c.carved.get(),
        c.slabs.get(),
        c.remote.get()
    );
}
