//! The stored digits CNN on a Cortex-M4F with no allocator: the container sits in flash
//! (`include_bytes!`, 64-byte aligned as the format requires), every layer is multiplied
//! straight from its packed codes through `QuantizedView::gemv`, and all scratch is one
//! `static`. Prints top-1 and the prediction of every image over semihosting, then exits
//! QEMU with the run's status. `scripts/check_firmware.sh` builds it, runs it under
//! `qemu-system-arm -M mps2-an386` and compares the predictions with the host's.

#![no_std]
#![no_main]

// The same forward pass and helpers as the host (`examples/export_model.rs`).
#[path = "../../cnn/ops.rs"]
#[allow(dead_code)] // the training half of ops.rs is not used here
mod ops;
#[path = "../../cnn/quantized.rs"]
mod quantized;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprint, hprintln};
use panic_halt as _;

use quantized::{QuantizedModel, Scratch};

/// Test images run: the first this many of the 360, as many as QEMU runs in a few seconds.
const IMAGES: usize = 360;

/// Bytes with the 64-byte alignment the container format requires of its buffer.
#[repr(C, align(64))]
struct Aligned<T>(T);

/// The stored model (`data/digits_cnn_exp4.exq`), in flash.
static CONTAINER: Aligned<[u8; CONTAINER_LEN]> =
    Aligned(*include_bytes!("../../../data/digits_cnn_exp4.exq"));
const CONTAINER_LEN: usize = include_bytes!("../../../data/digits_cnn_exp4.exq").len();
/// The test images (`data/digits_test.bin`), in flash.
static TEST_IMAGES: [u8; TEST_LEN] = *include_bytes!("../../../data/digits_test.bin");
const TEST_LEN: usize = include_bytes!("../../../data/digits_test.bin").len();

#[entry]
fn main() -> ! {
    let status = match run() {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(e) => {
            hprintln!("error: {}", e);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(status);
    #[allow(clippy::empty_loop)] // QEMU has exited; real hardware without a debugger idles
    loop {}
}

fn run() -> Result<(), quantized::QuantizedError> {
    let scratch = cortex_m::singleton!(: Scratch = Scratch::new())
        .expect("main runs once, so the singleton is free");
    let model = QuantizedModel::new(&CONTAINER.0)?;
    let mut correct = 0;
    hprint!("predictions:");
    for i in 0..IMAGES {
        let Some((image, label)) = quantized::record(&TEST_IMAGES, i) else {
            hprintln!();
            hprintln!("error: test record {} is malformed", i);
            debug::exit(debug::EXIT_FAILURE);
            return Ok(());
        };
        let p = model.predict(&image, scratch)?;
        correct += usize::from(p == usize::from(label));
        hprint!(" {}", p);
    }
    hprintln!();
    hprintln!("top-1: {}/{}", correct, IMAGES);
    Ok(())
}
