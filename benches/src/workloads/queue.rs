//! The bounded queue of block batches that the hand-over workloads (`xthread`, `prodcons`)
//! pass between threads.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::block::Block;

/// A batch of live blocks, handed from one thread to another.
pub type Batch = Vec<Block>;

/// A queue that never holds more than the batches in circulation, so its pre-sized
/// `VecDeque` never reallocates (no allocation of the harness's own inside the timed part).
pub struct Queue(Mutex<VecDeque<Batch>>);

impl Queue {
    pub fn with_capacity(n: usize) -> Self {
        Queue(Mutex::new(VecDeque::with_capacity(n)))
    }

    pub fn push(&self, b: Batch) {
        let mut q = self.0.lock().unwrap();
        debug_assert!(q.len() < q.capacity());
        q.push_back(b);
    }

    pub fn pop(&self) -> Option<Batch> {
        self.0.lock().unwrap().pop_front()
    }
}
