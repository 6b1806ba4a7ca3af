//! `libexpquant_nostd.a`: the allocation-free part of expquant's C ABI (feature `ffi-core`)
//! as a static library for bare-metal C programs, such as `examples/firmware-c/`. C code
//! includes `include/expquant.h` with `EXPQ_NO_STD` defined, which declares exactly the
//! functions linked here.
//!
//! No allocator, no `std`, no unwinding. The library returns a status for every bad input;
//! a panic would be a bug in it, and the handler below stops the core in a loop (build with
//! `panic = "abort"`, as this crate's profiles do, so nothing unwinds). A program that wants
//! to reset or report instead can drop this crate and link the core's `ffi-core` feature
//! into its own staticlib with its own handler.

#![no_std]

// The `expq_*` symbols are defined in the core crate; naming it links them in.
pub use expquant::ffi;

/// Stops the core: the firmware's watchdog or debugger takes it from here.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
