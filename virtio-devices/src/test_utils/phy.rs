//! A smoltcp guest on [`NetDriver`]: smoltcp transmits into the TX queue and receives what the
//! driver's interrupt handler took from the used receive ring. The caller polls the interface
//! and sleeps in [`NetDriver::wait_interrupt`] between polls.

use smoltcp::phy::{self, DeviceCapabilities, Medium};

use super::driver::{GuestBus, NetDriver};

/// A frame the driver received, for smoltcp.
#[derive(Debug)]
pub struct RxFrame(Vec<u8>);

/// A transmit slot: the frame smoltcp fills goes out through [`NetDriver::transmit`].
#[derive(Debug)]
pub struct TxSlot<'a, 'm, B: GuestBus>(&'a mut NetDriver<'m, B>);

impl phy::RxToken for RxFrame {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<B: GuestBus> phy::TxToken for TxSlot<'_, '_, B> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.transmit(&frame);
        r
    }
}

impl<'m, B: GuestBus> phy::Device for NetDriver<'m, B> {
    type RxToken<'a>
        = RxFrame
    where
        Self: 'a;
    type TxToken<'a>
        = TxSlot<'a, 'm, B>
    where
        Self: 'a;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.received.pop_front()?;
        Some((RxFrame(frame), TxSlot(self)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxSlot(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}
