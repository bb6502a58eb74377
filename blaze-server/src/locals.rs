//! Typed per-connection state: the seeds' `SetLocal`/`GetLocal`, keyed by type.

use std::any::{Any, TypeId};
use std::fmt;

/// A map from type to one value of that type.
///
/// A short list searched in order rather than a hash map: a connection
/// holds a handful of values at most, and an empty list is 24 bytes where
/// an empty `HashMap` is 48, on every idle connection.
#[derive(Default)]
pub struct Extensions {
    entries: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    fn position<T: 'static>(&self) -> Option<usize> {
        let id = TypeId::of::<T>();
        self.entries.iter().position(|(t, _)| *t == id)
    }

    /// Stores a value, returning the one it replaces.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        match self.position::<T>() {
            Some(i) => std::mem::replace(&mut self.entries[i].1, Box::new(value)).downcast().ok().map(|b| *b),
            None => {
                self.entries.push((TypeId::of::<T>(), Box::new(value)));
                None
            }
        }
    }

    /// The value of type `T`, if set.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.position::<T>().and_then(|i| self.entries[i].1.downcast_ref())
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.position::<T>().and_then(|i| self.entries[i].1.downcast_mut())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.position::<T>().and_then(|i| self.entries.swap_remove(i).1.downcast().ok().map(|b| *b))
    }

    /// Moves every value of `other` into this map (replacing values of
    /// the same types).
    pub fn extend(&mut self, other: Extensions) {
        for (id, value) in other.entries {
            match self.entries.iter_mut().find(|(t, _)| *t == id) {
                Some(slot) => slot.1 = value,
                None => self.entries.push((id, value)),
            }
        }
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions").field("len", &self.entries.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_keyed_by_type() {
        #[derive(Debug, PartialEq, Clone)]
        struct User(String);
        let mut ext = Extensions::new();
        ext.insert(User("ann".into()));
        ext.insert(7u32);
        assert_eq!(ext.get::<User>(), Some(&User("ann".into())));
        *ext.get_mut::<u32>().unwrap() += 1;
        assert_eq!(ext.remove::<u32>(), Some(8));
        assert_eq!(ext.get::<u64>(), None);
        let mut other = Extensions::new();
        other.insert(User("bob".into()));
        other.insert(1u8);
        ext.extend(other);
        assert_eq!(ext.get::<User>(), Some(&User("bob".into())));
        assert_eq!(ext.insert(2u8), Some(1));
    }
}
