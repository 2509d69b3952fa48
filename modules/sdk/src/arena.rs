//! The module's allocator (Wasm only).
//!
//! Every request gets a fresh instance that is thrown away after it, so nothing needs to
//! be freed: allocation bumps a pointer through a static arena (zero pages in the
//! component's initial memory: no `memory.grow` and no allocator start-up, and only the
//! pages a request touches are dirty for the host to reset), then through pages grown on
//! demand. Written by hand because that is the whole allocator a per-request instance
//! needs.

#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const ARENA_BYTES: usize = 1 << 20;
const PAGE: usize = 64 * 1024;

struct Bump {
    arena: UnsafeCell<[u8; ARENA_BYTES]>,
    /// The next free address and the end of the current region (0: not started).
    next: UnsafeCell<usize>,
    end: UnsafeCell<usize>,
}

// SAFETY: a Wasm module instance is single-threaded.
unsafe impl Sync for Bump {}

#[global_allocator]
static ALLOCATOR: Bump = Bump {
    arena: UnsafeCell::new([0; ARENA_BYTES]),
    next: UnsafeCell::new(0),
    end: UnsafeCell::new(0),
};

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see above), and only this function touches the two.
        let (next, end) = unsafe { (&mut *self.next.get(), &mut *self.end.get()) };
        if *end == 0 {
            *next = self.arena.get() as usize;
            *end = *next + ARENA_BYTES;
        }
        let align = layout.align();
        let start = (*next + align - 1) & !(align - 1);
        if let Some(stop) = start.checked_add(layout.size()) {
            if stop <= *end {
                *next = stop;
                return start as *mut u8;
            }
        }
        // Out of arena: grow linear memory and go on there. The host's memory limit makes
        // this fail (null, then an allocation-error trap) instead of growing without bound.
        let pages = (layout.size() + align).div_ceil(PAGE);
        let old = core::arch::wasm32::memory_grow(0, pages);
        if old == usize::MAX {
            return core::ptr::null_mut();
        }
        let base = old * PAGE;
        let start = (base + align - 1) & !(align - 1);
        *next = start + layout.size();
        *end = base + pages * PAGE;
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {
        // Freed with the instance.
    }
}
