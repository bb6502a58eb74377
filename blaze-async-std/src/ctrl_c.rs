//! Ctrl-C for `App::listen` on async-std, which has no signal API of its
//! own: one process-wide handler (the `ctrlc` crate; a process may install
//! only one) shuts down every app listening at that moment.

use std::sync::{Mutex, OnceLock, PoisonError};

use blaze_server::ShutdownHandle;

/// Apps in `listen`, by registration number.
static LISTENING: Mutex<Vec<(u64, ShutdownHandle)>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<bool> = OnceLock::new();
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registered while alive: Ctrl-C shuts the app down.
#[derive(Debug)]
pub(crate) struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        LISTENING.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _)| *id != self.0);
    }
}

/// Makes Ctrl-C start `app`'s graceful shutdown until the registration is
/// dropped. Ctrl-C with no app listening (before `listen`, or after it
/// returned) ends the process, as it would without a handler.
pub(crate) fn shutdown_on_ctrl_c(app: ShutdownHandle) -> Registration {
    let installed = *INSTALLED.get_or_init(|| match ctrlc::set_handler(on_ctrl_c) {
        Ok(()) => true,
        Err(err) => {
            // The application installed its own handler: it decides.
            tracing::warn!("Ctrl-C handler not installed ({err}); stop the server with App::shutdown");
            false
        }
    });
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if installed {
        LISTENING.lock().unwrap_or_else(PoisonError::into_inner).push((id, app));
    }
    Registration(id)
}

fn on_ctrl_c() {
    let apps: Vec<ShutdownHandle> =
        LISTENING.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(_, app)| app.clone()).collect();
    if apps.is_empty() {
        std::process::exit(130);
    }
    tracing::info!("Ctrl-C: shutting down");
    for app in apps {
        app.shutdown();
    }
}
