//! View construction, dequantize, GEMV and GEMM allocate nothing: counted by a global allocator.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use expquant::{quantize, write_container, Config, ContainerView, QuantizedView, ScaleRule};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn views_decode_and_multiply_without_allocating() {
    let (rows, cols) = (16, 40);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 700.0)
        .collect();
    let configs = [
        Config::exponential(4),
        Config::linear(3).per_tensor(),
        Config::exponential(5)
            .per_group(16)
            .with_scale_rule(ScaleRule::Mse),
        Config::linear(8).with_zero_level(false),
    ];
    for config in configs {
        let tensor = quantize(&w, rows, cols, &config).unwrap();
        let bytes = tensor.to_bytes();
        let container = write_container(&[("w", &tensor)]).unwrap();
        let x = vec![0.5f32; cols];
        let mut out = vec![0.0f32; rows * cols];
        let mut y = vec![0.0f32; rows];
        let n = 5;
        let xs = vec![0.25f32; cols * n];
        let mut ys = vec![0.0f32; rows * n];

        let before = ALLOCATIONS.load(Ordering::SeqCst);
        let view = QuantizedView::from_bytes(&bytes).unwrap();
        view.dequantize_into(&mut out).unwrap();
        view.gemv(&x, &mut y).unwrap();
        view.gemv_rows(&x, 3..9, &mut y[..6]).unwrap();
        view.gemm(&xs, n, &mut ys).unwrap();
        view.gemm_rows(&xs, n, 3..9, &mut ys[..6 * n]).unwrap();
        view.gemm(&x, 1, &mut y).unwrap();
        let from_container = ContainerView::from_bytes(&container)
            .unwrap()
            .get("w")
            .unwrap()
            .unwrap();
        from_container.gemv(&x, &mut y).unwrap();
        let after = ALLOCATIONS.load(Ordering::SeqCst);
        assert_eq!(after, before, "{config:?}: {} allocations", after - before);

        // The counter does count: an owned dequantize allocates.
        let _ = tensor.dequantize();
        assert!(ALLOCATIONS.load(Ordering::SeqCst) > after);
    }
}
