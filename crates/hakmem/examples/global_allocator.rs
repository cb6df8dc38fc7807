//! hakmem as a Rust program's global allocator: every Box, Vec and String below comes from it.
//! `cargo run --release -p hakmem --example global_allocator`

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

fn main() {
    let words: Vec<String> = (0..100_000).map(|i| format!("word-{i}")).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let chunk: Vec<String> = words.iter().skip(t).step_by(4).cloned().collect();
            // The strings are dropped (freed) on another thread than the one that made them.
            std::thread::spawn(move || chunk.iter().map(|s| s.len()).sum::<usize>())
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(hakmem::owns(words[0].as_ptr()));
    println!("{total} bytes of words; {}", hakmem::stats());
}
