/* Output and exit through Arm semihosting (QEMU -semihosting), from startup.c. */
#ifndef FIRMWARE_SEMIHOSTING_H
#define FIRMWARE_SEMIHOSTING_H

/* Writes a NUL-terminated string to the host's standard output. */
void semihost_write(const char *text);
/* Ends the run: QEMU exits with status 0 when `ok` is non-zero, 1 otherwise. */
void semihost_exit(int ok) __attribute__((noreturn));

#endif
