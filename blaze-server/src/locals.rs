//! Typed per-connection state: the seeds' `SetLocal`/`GetLocal`, keyed by type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

/// A map from type to one value of that type.
#[derive(Default)]
pub struct Extensions {
    map: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// Stores a value, returning the one it replaces.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.map.insert(TypeId::of::<T>(), Box::new(value)).and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The value of type `T`, if set.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref())
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.map.get_mut(&TypeId::of::<T>()).and_then(|b| b.downcast_mut())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.map.remove(&TypeId::of::<T>()).and_then(|b| b.downcast().ok().map(|b| *b))
    }

    /// Moves every value of `other` into this map.
    pub fn extend(&mut self, other: Extensions) {
        self.map.extend(other.map);
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions").field("len", &self.map.len()).finish()
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
    }
}
