//! The names that match results carry (departments, rule ids, keywords and terms as written):
//! interned for the life of the process, so that a result copies a pointer per hit instead
//! of counting references on a shared string.
//!
//! Only configured names are interned (when rules are built, and a department id when an
//! alert draft is rebuilt), never item text, and they are never freed. A reload with the same
//! rules adds nothing; an edit adds only the names it introduces, so what is held is bounded
//! by the distinct names ever configured: each costs its length plus a set entry (about
//! 40 bytes), not a growth per item or per reload.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// The one copy of `name`.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    // A panic elsewhere while holding the lock leaves the set intact (inserts are whole), so
    // a poisoned lock is still usable.
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn one_copy_per_name() {
        let a = intern("城管");
        let b = intern(&String::from("城管"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "城管");
        assert!(!std::ptr::eq(a, intern("城管执法")));
    }
}
