//! Write buffers reused between batches: the runs of encoded PUBLISHes the router copies
//! for a connection ([`crate::outbox::Outbox::push_encoded`]) and the buffer a connection
//! writes from.
//!
//! Owns one small process-wide free list. Under fan-out every subscriber's connection
//! gets a fresh run per batch and frees it once written; without reuse the allocator
//! returns that memory to the system after each batch and faults it in again for the
//! next (measured: a sixth of the broker's time went to page faults). The list is
//! bounded in count and in the size of what it keeps, so an idle broker holds at most
//! [`KEEP`] × [`LARGEST`] bytes here, and an idle connection holds nothing. It never
//! blocks for long: one short lock per buffer taken or given back.

use std::sync::Mutex;

use bytes::BytesMut;

/// Most buffers kept.
const KEEP: usize = 128;
/// Largest capacity kept; bigger buffers (a large message) go back to the allocator.
const LARGEST: usize = 32 * 1024;
/// Smallest capacity kept (a lone acknowledgement's buffer is not worth it).
const SMALLEST: usize = 1024;

static FREE: FreeList = FreeList::new(KEEP);

/// An empty buffer with room for at least `min` bytes, reused when one is kept.
pub fn take(min: usize) -> BytesMut {
    FREE.take(min)
}

/// Gives a buffer back once written; kept for reuse when the list has room and the
/// buffer is neither tiny nor large.
pub fn give(b: BytesMut) {
    FREE.give(b);
}

/// A bounded list of empty buffers.
struct FreeList {
    free: Mutex<Vec<BytesMut>>,
    keep: usize,
}

impl FreeList {
    const fn new(keep: usize) -> FreeList {
        FreeList {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BytesMut>> {
        // A poisoned list is still a list of buffers.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, min: usize) -> BytesMut {
        let kept = self.lock().pop();
        match kept {
            Some(mut b) => {
                b.reserve(min);
                b
            }
            None => BytesMut::with_capacity(min),
        }
    }

    fn give(&self, mut b: BytesMut) {
        if !(SMALLEST..=LARGEST).contains(&b.capacity()) {
            return;
        }
        b.clear();
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let list = FreeList::new(2);
        let mut b = list.take(4096);
        b.extend_from_slice(b"abc");
        let ptr = b.as_ptr();
        list.give(b);
        let again = list.take(16);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "reused");
        assert!(again.capacity() >= 4096);
    }

    #[test]
    fn large_and_tiny_buffers_are_not_kept_nor_more_than_the_bound() {
        let list = FreeList::new(2);
        list.give(BytesMut::with_capacity(LARGEST * 2));
        list.give(BytesMut::with_capacity(16));
        assert!(list.lock().is_empty());
        for _ in 0..3 {
            list.give(BytesMut::with_capacity(SMALLEST));
        }
        assert_eq!(list.lock().len(), 2);
    }
}
