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

static FREE: Mutex<Vec<BytesMut>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `min` bytes, reused when one is kept.
pub fn take(min: usize) -> BytesMut {
    let kept = FREE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    match kept {
        Some(mut b) => {
            b.reserve(min);
            b
        }
        None => BytesMut::with_capacity(min),
    }
}

/// Gives a buffer back once written; kept for reuse when the list has room and the
/// buffer is neither tiny nor large.
pub fn give(mut b: BytesMut) {
    let cap = b.capacity();
    if !(1024..=LARGEST).contains(&cap) {
        return;
    }
    b.clear();
    let mut free = FREE.lock().unwrap_or_else(|p| p.into_inner());
    if free.len() < KEEP {
        free.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let mut b = take(4096);
        b.extend_from_slice(b"abc");
        let ptr = b.as_ptr();
        give(b);
        // Other tests may use the list at the same time: look for ours among a few.
        let again: Vec<BytesMut> = (0..KEEP).map(|_| take(16)).collect();
        assert!(again.iter().all(|b| b.is_empty()));
        assert!(again.iter().any(|b| b.as_ptr() == ptr), "reused");
        again.into_iter().for_each(give);
    }

    #[test]
    fn large_and_tiny_buffers_are_not_kept() {
        give(BytesMut::with_capacity(LARGEST * 2));
        give(BytesMut::with_capacity(16));
        let free = FREE.lock().unwrap();
        assert!(
            free.iter()
                .all(|b| (1024..=LARGEST).contains(&b.capacity()))
        );
    }
}
