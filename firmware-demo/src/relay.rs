//! The relay a satellite switches: on the board, bit 0 of the MPS2 FPGAIO `LED0`
//! register (a real, readable register that QEMU's mps2 boards emulate; on a
//! product it would be the GPIO line of a relay driver); on the host, a variable.

/// A relay that can be switched and read back.
pub trait Relay {
    /// Switch it.
    fn set(&mut self, on: bool);
    /// Its state, as read back.
    fn get(&self) -> bool;
}

/// The host's stand-in.
#[cfg(not(target_os = "none"))]
#[derive(Debug, Default)]
pub struct Simulated(bool);

#[cfg(not(target_os = "none"))]
impl Relay for Simulated {
    fn set(&mut self, on: bool) {
        self.0 = on;
    }
    fn get(&self) -> bool {
        self.0
    }
}

/// `LED0` of the MPS2 FPGA I/O block (AN385/AN386: base `0x4002_8000`, offset 0).
#[cfg(target_os = "none")]
pub struct FpgaioLed(());

#[cfg(target_os = "none")]
const LED0: *mut u32 = 0x4002_8000 as *mut u32;

#[cfg(target_os = "none")]
impl FpgaioLed {
    /// The relay, switched off. Call once (it owns the register).
    pub fn take() -> Self {
        let mut led = FpgaioLed(());
        led.set(false);
        led
    }
}

#[cfg(target_os = "none")]
impl Relay for FpgaioLed {
    fn set(&mut self, on: bool) {
        // SAFETY: LED0 is a word-aligned device register of the mps2-an386 memory map,
        // always mapped; `FpgaioLed` is its only user (single core, no interrupts
        // touch it), so the read-modify-write cannot race.
        unsafe {
            let v = core::ptr::read_volatile(LED0);
            core::ptr::write_volatile(LED0, (v & !1) | u32::from(on));
        }
    }
    fn get(&self) -> bool {
        // SAFETY: as in `set`: an always-mapped, aligned device register.
        unsafe { core::ptr::read_volatile(LED0) & 1 == 1 }
    }
}
