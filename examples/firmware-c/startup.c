/* Reset and fault handling for the Cortex-M4F of mps2-an386, and the semihosting the
 * firmware needs (write to standard output, exit QEMU). No C library start-up code is
 * linked. */
#include <stdint.h>

#include "semihosting.h"

extern uint32_t data_start[], data_end[], data_load[], bss_start[], bss_end[];
extern uint32_t stack_top[];

int main(void);

/* Calls of the Arm semihosting interface. */
enum { SYS_OPEN = 0x01, SYS_WRITE = 0x05, SYS_EXIT = 0x18 };
/* SYS_OPEN of ":tt" in this mode ("w") is the host's standard output (SYS_WRITE0 would write
 * to QEMU's standard error). */
enum { OPEN_MODE_W = 4 };
/* SYS_EXIT reasons: QEMU exits with status 0 for the first, 1 for the second. */
enum { ADP_STOPPED_APPLICATION_EXIT = 0x20026, ADP_STOPPED_RUN_TIME_ERROR = 0x20023 };

static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_write(const char *text) {
    static uint32_t stdout_handle;
    static int opened;
    if (!opened) {
        static const char tt[] = ":tt";
        const uint32_t open_args[3] = {(uint32_t)(uintptr_t)tt, OPEN_MODE_W, sizeof tt - 1};
        stdout_handle = semihost(SYS_OPEN, open_args);
        opened = 1;
    }
    uint32_t len = 0;
    while (text[len]) ++len;
    const uint32_t write_args[3] = {stdout_handle, (uint32_t)(uintptr_t)text, len};
    semihost(SYS_WRITE, write_args);
}

void semihost_exit(int ok) {
    semihost(SYS_EXIT,
             (const void *)(uintptr_t)(ok ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUN_TIME_ERROR));
    for (;;) {
    }
}

void reset_handler(void) {
    /* Full access to the FPU (CP10, CP11) before any floating-point instruction runs. */
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *src = data_load, *dst = data_start; dst < data_end;) *dst++ = *src++;
    for (uint32_t *dst = bss_start; dst < bss_end;) *dst++ = 0;
    semihost_exit(main() == 0);
}

/* A fault (or a panic in the library, which halts in a loop and never gets here) ends the
 * run with a failure status instead of hanging QEMU. */
static void fault_handler(void) {
    semihost_write("error: hard fault\n");
    semihost_exit(0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))stack_top,
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
};
