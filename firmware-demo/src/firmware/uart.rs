//! UART0 of the MPS2 board (an ARM CMSDK APB UART at `0x4000_4000`), receive side,
//! polled. QEMU connects it to the serial port, which `-nographic` puts on stdio.
//! Sending goes through semihosting instead (the test compares that stream).

/// Register block base.
const BASE: usize = 0x4000_4000;
/// Received byte (read).
const DATA: *mut u32 = BASE as *mut u32;
/// Bit 1: a received byte is waiting.
const STATE: *mut u32 = (BASE + 0x04) as *mut u32;
/// Bit 0: transmitter enable, bit 1: receiver enable.
const CTRL: *mut u32 = (BASE + 0x08) as *mut u32;
/// Baud rate divider (≥ 16; QEMU ignores the rate).
const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;
const STATE_RX_FULL: u32 = 1 << 1;

/// The UART, receiving. Owns the registers.
pub struct Uart0(());

impl Uart0 {
    /// Enable the receiver. Call once.
    pub fn take() -> Self {
        // SAFETY: word-aligned registers of the board's always-mapped UART0; this is
        // their only user.
        unsafe {
            core::ptr::write_volatile(BAUDDIV, 16);
            core::ptr::write_volatile(CTRL, 0b11);
        }
        Uart0(())
    }

    /// Wait for the next byte.
    pub fn read(&mut self) -> u8 {
        // SAFETY: as in `take`. Reading DATA pops the byte and clears RX_FULL.
        unsafe {
            while core::ptr::read_volatile(STATE) & STATE_RX_FULL == 0 {}
            core::ptr::read_volatile(DATA) as u8
        }
    }

    /// Every byte received, forever (the caller stops at EOT).
    pub fn bytes(mut self) -> impl Iterator<Item = u8> {
        core::iter::from_fn(move || Some(self.read()))
    }
}
