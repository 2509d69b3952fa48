//! Small blocks on free lists, one per 16-byte size class, in front of a general
//! allocator (dlmalloc in the node's module builds, see `guest_alloc`).
//!
//! A module's request allocates thousands of short strings and vectors (the WAF's rule
//! variables and names, header lists) and frees them again: taking a block off a list
//! costs a few instructions where dlmalloc's bins and coalescing cost tens. A freed small
//! block stays on its list for the next allocation of its class and is never handed back,
//! so what the lists hold is bounded by the instance's peak of small blocks.
#![allow(unsafe_code)]

use core::alloc::Layout;
use core::ptr;

/// Largest block served from the lists.
pub const SMALL_MAX: usize = 512;
const CLASS_BYTES: usize = 16;
const CLASSES: usize = SMALL_MAX / CLASS_BYTES;

/// The allocator behind the lists, with dlmalloc's calling convention.
pub trait Backing {
    /// # Safety
    /// As `GlobalAlloc::alloc` with a layout of `size` and `align`.
    unsafe fn malloc(&mut self, size: usize, align: usize) -> *mut u8;
    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`.
    unsafe fn calloc(&mut self, size: usize, align: usize) -> *mut u8;
    /// # Safety
    /// As `GlobalAlloc::dealloc`: `ptr` came from this backing with that size and align.
    unsafe fn free(&mut self, ptr: *mut u8, size: usize, align: usize);
    /// # Safety
    /// As `GlobalAlloc::realloc`.
    unsafe fn realloc(&mut self, ptr: *mut u8, size: usize, align: usize, new: usize) -> *mut u8;
}

/// The size class of a block, `None` for one the backing serves directly. Blocks on the
/// lists are 16-byte aligned, so a stricter alignment goes to the backing too.
fn class_of(layout: Layout) -> Option<usize> {
    (layout.size() <= SMALL_MAX && layout.align() <= CLASS_BYTES)
        .then(|| layout.size().max(1).div_ceil(CLASS_BYTES) - 1)
}

/// A free block: its first word links to the next free block of its class.
struct FreeBlock {
    next: *mut FreeBlock,
}

pub struct SmallBlocks<B> {
    backing: B,
    free: [*mut FreeBlock; CLASSES],
}

impl<B: Backing> SmallBlocks<B> {
    pub const fn new(backing: B) -> Self {
        SmallBlocks {
            backing,
            free: [ptr::null_mut(); CLASSES],
        }
    }

    /// # Safety
    /// As `GlobalAlloc::alloc`.
    pub unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return self.backing.malloc(layout.size(), layout.align());
        };
        let head = self.free[class];
        if head.is_null() {
            return self.backing.malloc((class + 1) * CLASS_BYTES, CLASS_BYTES);
        }
        self.free[class] = (*head).next;
        head.cast()
    }

    /// # Safety
    /// As `GlobalAlloc::alloc_zeroed`.
    pub unsafe fn alloc_zeroed(&mut self, layout: Layout) -> *mut u8 {
        if class_of(layout).is_none() {
            return self.backing.calloc(layout.size(), layout.align());
        }
        let block = self.alloc(layout);
        if !block.is_null() {
            ptr::write_bytes(block, 0, layout.size());
        }
        block
    }

    /// # Safety
    /// As `GlobalAlloc::dealloc`.
    pub unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return self.backing.free(ptr, layout.size(), layout.align());
        };
        let block = ptr.cast::<FreeBlock>();
        (*block).next = self.free[class];
        self.free[class] = block;
    }

    /// # Safety
    /// As `GlobalAlloc::realloc`.
    pub unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (class_of(layout), class_of(new_layout)) {
            (None, None) => self
                .backing
                .realloc(ptr, layout.size(), layout.align(), new_size),
            (Some(old), Some(new)) if old == new => ptr,
            _ => {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, System};

    /// The system allocator as the backing, counting what reaches it.
    #[derive(Default)]
    struct Counted {
        mallocs: usize,
        frees: usize,
    }

    impl Backing for Counted {
        unsafe fn malloc(&mut self, size: usize, align: usize) -> *mut u8 {
            self.mallocs += 1;
            System.alloc(Layout::from_size_align(size, align).unwrap())
        }
        unsafe fn calloc(&mut self, size: usize, align: usize) -> *mut u8 {
            self.mallocs += 1;
            System.alloc_zeroed(Layout::from_size_align(size, align).unwrap())
        }
        unsafe fn free(&mut self, ptr: *mut u8, size: usize, align: usize) {
            self.frees += 1;
            System.dealloc(ptr, Layout::from_size_align(size, align).unwrap())
        }
        unsafe fn realloc(
            &mut self,
            ptr: *mut u8,
            size: usize,
            align: usize,
            new: usize,
        ) -> *mut u8 {
            System.realloc(ptr, Layout::from_size_align(size, align).unwrap(), new)
        }
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn size_classes() {
        assert_eq!(class_of(layout(1)), Some(0));
        assert_eq!(class_of(layout(16)), Some(0));
        assert_eq!(class_of(layout(17)), Some(1));
        assert_eq!(class_of(layout(SMALL_MAX)), Some(CLASSES - 1));
        assert_eq!(class_of(layout(SMALL_MAX + 1)), None);
        assert_eq!(class_of(Layout::from_size_align(64, 32).unwrap()), None);
    }

    #[test]
    fn a_freed_small_block_is_reused_and_large_ones_go_back() {
        let mut heap = SmallBlocks::new(Counted::default());
        unsafe {
            let a = heap.alloc(layout(20));
            heap.dealloc(a, layout(20));
            // Same class (17..=32 bytes): the same block, not the backing.
            let b = heap.alloc(layout(30));
            assert_eq!(a, b);
            assert_eq!(heap.backing.mallocs, 1);
            // Another class: from the backing.
            let c = heap.alloc(layout(40));
            assert_ne!(c, b);
            assert_eq!(heap.backing.mallocs, 2);
            let big = heap.alloc(layout(4096));
            heap.dealloc(big, layout(4096));
            assert_eq!(heap.backing.frees, 1);
            heap.dealloc(b, layout(30));
            heap.dealloc(c, layout(40));
            assert_eq!(heap.backing.frees, 1, "small blocks stay on their lists");
        }
    }

    #[test]
    fn blocks_keep_their_contents_and_zeroing_is_honoured() {
        let mut heap = SmallBlocks::new(Counted::default());
        unsafe {
            // Dirty a block, free it, and ask for a zeroed one of its class.
            let a = heap.alloc(layout(48));
            ptr::write_bytes(a, 0xAB, 48);
            heap.dealloc(a, layout(48));
            let z = heap.alloc_zeroed(layout(48));
            assert_eq!(z, a);
            assert!(std::slice::from_raw_parts(z, 48).iter().all(|&b| b == 0));
            // Grow through every path: within a class, across classes, to a large block,
            // and shrink back; the bytes written first survive each move.
            let mut p = z;
            let mut size = 48;
            for (i, byte) in std::slice::from_raw_parts_mut(p, size)
                .iter_mut()
                .enumerate()
            {
                *byte = i as u8;
            }
            let mut kept = size;
            for new in [40, 100, 500, 3000, 200, 10] {
                p = heap.realloc(p, layout(size), new);
                kept = kept.min(new);
                let bytes = std::slice::from_raw_parts(p, kept);
                assert!(
                    bytes.iter().enumerate().all(|(i, &b)| b == i as u8),
                    "{new}"
                );
                size = new;
            }
            heap.dealloc(p, layout(size));
        }
    }

    #[test]
    fn many_live_blocks_never_overlap() {
        let mut heap = SmallBlocks::new(Counted::default());
        let mut live = Vec::new();
        unsafe {
            for round in 0..3 {
                for i in 0..2000usize {
                    let size = 1 + (i * 7 + round) % SMALL_MAX;
                    let p = heap.alloc(layout(size));
                    ptr::write_bytes(p, (i % 251) as u8, size);
                    live.push((p, size, (i % 251) as u8));
                }
                // Free every other block, so the next round reuses them.
                let mut kept = Vec::new();
                for (n, (p, size, fill)) in live.drain(..).enumerate() {
                    let bytes = std::slice::from_raw_parts(p, size);
                    assert!(bytes.iter().all(|&b| b == fill));
                    if n % 2 == 0 {
                        heap.dealloc(p, layout(size));
                    } else {
                        kept.push((p, size, fill));
                    }
                }
                live = kept;
            }
            for (p, size, _) in live {
                heap.dealloc(p, layout(size));
            }
        }
    }
}
