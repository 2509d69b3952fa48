//! The allocator of the node's own module builds (`wasm32-unknown-unknown`): dlmalloc
//! whose first region is a static arena, so that a fresh instance allocates without
//! growing its memory.
//!
//! Why not std's allocator: on this target it grows linear memory (`memory.grow`) on an
//! instance's first allocation. The node starts a fresh instance per request, and each
//! grow costs the host a change of page protections and a larger reset when the instance
//! is torn down: about as much as the rest of the instance's start (docs/benchmarks.md).
//! The arena is zero-initialised data, inside the memory every instance starts with;
//! pages it never touches cost nothing. Past the arena, memory grows as usual.
//!
//! In front of dlmalloc, small blocks come from free lists per size class
//! ([`crate::small_blocks`]).
#![allow(unsafe_code)]

use crate::small_blocks::{Backing, SmallBlocks};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr;
use dlmalloc::{Allocator, Dlmalloc};

const ARENA_BYTES: usize = 256 << 10;
const WASM_PAGE: usize = 64 * 1024;
/// dlmalloc's flag for a region it did not get from the system: never freed or merged.
const EXTERN_BIT: u32 = 1;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: a module instance has one thread; only the allocator touches the arena, once.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

/// Hands dlmalloc the arena first, then pages from `memory.grow`.
struct ArenaFirst {
    arena_given: Cell<bool>,
}

// SAFETY: a module instance has one thread (the Wasm modules are built without threads).
unsafe impl Send for ArenaFirst {}

unsafe impl Allocator for ArenaFirst {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if !self.arena_given.get() && size <= ARENA_BYTES {
            self.arena_given.set(true);
            return (ARENA.0.get().cast(), ARENA_BYTES, EXTERN_BIT);
        }
        let pages = size.div_ceil(WASM_PAGE);
        let previous = core::arch::wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        ((previous * WASM_PAGE) as *mut u8, pages * WASM_PAGE, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        WASM_PAGE
    }
}

/// dlmalloc behind the small-block lists.
impl Backing for Dlmalloc<ArenaFirst> {
    unsafe fn malloc(&mut self, size: usize, align: usize) -> *mut u8 {
        Dlmalloc::malloc(self, size, align)
    }

    unsafe fn calloc(&mut self, size: usize, align: usize) -> *mut u8 {
        Dlmalloc::calloc(self, size, align)
    }

    unsafe fn free(&mut self, ptr: *mut u8, size: usize, align: usize) {
        Dlmalloc::free(self, ptr, size, align)
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, size: usize, align: usize, new: usize) -> *mut u8 {
        Dlmalloc::realloc(self, ptr, size, align, new)
    }
}

type Heap = SmallBlocks<Dlmalloc<ArenaFirst>>;

struct GuestAllocator(UnsafeCell<Heap>);

// SAFETY: a module instance has one thread, so calls never overlap.
unsafe impl Sync for GuestAllocator {}

unsafe impl GlobalAlloc for GuestAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (*self.0.get()).alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (*self.0.get()).alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        (*self.0.get()).dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (*self.0.get()).realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: GuestAllocator = GuestAllocator(UnsafeCell::new(SmallBlocks::new(
    Dlmalloc::new_with_allocator(ArenaFirst {
        arena_given: Cell::new(false),
    }),
)));
