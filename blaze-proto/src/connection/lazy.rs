//! State boxed on first use: most connections never need it, and an empty
//! value inline would cost every one of them its size (idle memory).

/// The value in `slot`, made (boxed, `Default`) on first use. The allocation
/// is out of line and cold, so the callers on the hot path stay small
/// enough to inline (boxing the event queue had stopped `push_event` being
/// inlined: +5% instructions per echoed message).
#[inline]
pub(crate) fn boxed<T: Default>(slot: &mut Option<Box<T>>) -> &mut T {
    if slot.is_none() {
        fill(slot);
    }
    slot.as_mut().expect("filled above")
}

#[cold]
#[inline(never)]
fn fill<T: Default>(slot: &mut Option<Box<T>>) {
    *slot = Some(Box::default());
}
