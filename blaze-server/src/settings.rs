//! One copy of the per-connection settings (the protocol core's `Config`
//! and the driver's `DriverLimits`) for every connection made with the
//! same configuration: an idle connection holds two `Arc`s, not ~230
//! bytes of copies (BENCHMARKS.md, "Idle connections").

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::WsConfig;
use crate::driver::DriverLimits;

/// Distinct configurations remembered; past it the oldest is forgotten
/// (its connections keep their `Arc`s). Routes rarely have more than a few.
const MAX_ENTRIES: usize = 16;

/// Settings shared by the connections of a configuration.
pub(crate) type Shared = (Arc<blaze_proto::Config>, Arc<DriverLimits>);

/// The settings of recent configurations, compared by value: a route's
/// config, the app's (which `App::config` may replace at any time) and a
/// guard's per-connection choice all find their entry without any of them
/// having to keep one.
#[derive(Default)]
pub(crate) struct SettingsCache {
    entries: Mutex<Vec<Shared>>,
}

impl SettingsCache {
    /// The shared settings for a server connection configured by `config`.
    pub(crate) fn get(&self, config: &WsConfig) -> Shared {
        let core = config.connection_config(0);
        let limits = DriverLimits::from_config(config);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((c, l)) = entries.iter().find(|(c, l)| **c == core && l.same_as(&limits)) {
            return (c.clone(), l.clone());
        }
        let entry = (Arc::new(core), Arc::new(limits));
        if entries.len() >= MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(entry.clone());
        entry
    }
}

impl std::fmt::Debug for SettingsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsCache").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn equal_configurations_share_one_copy() {
        let cache = SettingsCache::default();
        let a = cache.get(&WsConfig::default());
        let b = cache.get(&WsConfig::default());
        assert!(Arc::ptr_eq(&a.0, &b.0) && Arc::ptr_eq(&a.1, &b.1));
        let other = cache.get(&WsConfig::default().ping_interval(Some(Duration::from_secs(5))));
        assert!(!Arc::ptr_eq(&a.0, &other.0));
        assert_eq!(other.0.ping_interval, Some(Duration::from_secs(5)));
        let limits = cache.get(&WsConfig::default().write_timeout(None));
        assert!(!Arc::ptr_eq(&a.1, &limits.1));
        assert_eq!(limits.1.write_timeout, None);
    }
}
