//! The watch cache: the newest object of each watched kind, by name, typed and shared
//! (`Arc<Object<K>>`, as kube-runtime's reflector `Store<K>`). Objects are decoded once,
//! when their watch event arrives; a reconcile never re-parses JSON.
//!
//! [`Cache`] holds one [`KindCache`] per kind; reconcilers read it through their
//! `Context`, which hands objects out type-erased and downcasts them back.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use hostkit_api::kinds::{KindInfo, KindSpec, Object};
use hostkit_reconcilers::context::Cached;

/// The newest objects of one kind, by name.
pub struct KindCache<K: KindSpec> {
    objects: RwLock<BTreeMap<String, Arc<Object<K>>>>,
}

impl<K: KindSpec> Default for KindCache<K> {
    fn default() -> Self {
        KindCache {
            objects: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<K: KindSpec> KindCache<K> {
    pub fn get(&self, name: &str) -> Option<Arc<Object<K>>> {
        self.objects
            .read()
            .expect("not poisoned")
            .get(name)
            .cloned()
    }

    /// Every object, in name order.
    pub fn list(&self) -> Vec<Arc<Object<K>>> {
        self.objects
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Caches `o`; returns what it replaces.
    pub fn put(&self, o: Arc<Object<K>>) -> Option<Arc<Object<K>>> {
        self.objects
            .write()
            .expect("not poisoned")
            .insert(o.name().to_string(), o)
    }

    pub fn remove(&self, name: &str) -> Option<Arc<Object<K>>> {
        self.objects.write().expect("not poisoned").remove(name)
    }

    /// Replaces everything (a fresh list); returns what was cached before.
    pub fn replace(&self, objects: Vec<Arc<Object<K>>>) -> BTreeMap<String, Arc<Object<K>>> {
        let map = objects
            .into_iter()
            .map(|o| (o.name().to_string(), o))
            .collect();
        std::mem::replace(&mut *self.objects.write().expect("not poisoned"), map)
    }
}

/// A [`KindCache`] whatever its kind: what the cache keeps per kind.
trait Erased: Send + Sync {
    fn get(&self, name: &str) -> Option<Cached>;
    fn uid(&self, name: &str) -> Option<String>;
    fn all(&self) -> Vec<Cached>;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<K: KindSpec> Erased for KindCache<K> {
    fn get(&self, name: &str) -> Option<Cached> {
        KindCache::get(self, name).map(|o| o as Cached)
    }

    fn uid(&self, name: &str) -> Option<String> {
        KindCache::get(self, name).and_then(|o| o.metadata.uid.clone())
    }

    fn all(&self) -> Vec<Cached> {
        self.list().into_iter().map(|o| o as Cached).collect()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// One [`KindCache`] per watched kind.
#[derive(Default)]
pub struct Cache {
    kinds: RwLock<HashMap<&'static str, Arc<dyn Erased>>>,
}

impl Cache {
    /// The cache of kind `K`, created empty the first time it is asked for.
    pub fn kind<K: KindSpec>(&self) -> Arc<KindCache<K>> {
        let existing = self
            .kinds
            .read()
            .expect("not poisoned")
            .get(K::INFO.plural)
            .cloned();
        let erased = existing.unwrap_or_else(|| {
            self.kinds
                .write()
                .expect("not poisoned")
                .entry(K::INFO.plural)
                .or_insert_with(|| Arc::new(KindCache::<K>::default()))
                .clone()
        });
        erased
            .as_any()
            .downcast::<KindCache<K>>()
            .expect("a kind's cache holds that kind")
    }

    /// The cached object of `kind` named `name`, type-erased.
    pub fn get_any(&self, kind: &'static KindInfo, name: &str) -> Option<Cached> {
        self.erased(kind)?.get(name)
    }

    /// The uid of the cached object of `kind` named `name`.
    pub fn uid_of(&self, kind: &'static KindInfo, name: &str) -> Option<String> {
        self.erased(kind)?.uid(name)
    }

    /// Every cached object of `kind`, type-erased, in name order.
    pub fn all_any(&self, kind: &'static KindInfo) -> Vec<Cached> {
        self.erased(kind).map(|c| c.all()).unwrap_or_default()
    }

    /// The cache of `kind` whatever its type, if it was ever asked for.
    fn erased(&self, kind: &'static KindInfo) -> Option<Arc<dyn Erased>> {
        self.kinds
            .read()
            .expect("not poisoned")
            .get(kind.plural)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use hostkit_api::kinds::{HostSpec, ServiceSpec};

    use super::*;

    #[test]
    fn objects_come_back_typed_and_kinds_stay_apart() {
        let cache = Cache::default();
        let host = Object::new("a", HostSpec::default());
        cache.kind::<HostSpec>().put(Arc::new(host.clone()));
        assert_eq!(*cache.kind::<HostSpec>().get("a").unwrap(), host);
        assert!(cache.kind::<ServiceSpec>().get("a").is_none());
        let any = cache.get_any(HostSpec::INFO, "a").unwrap();
        assert!(any.downcast::<Object<HostSpec>>().is_ok());
        assert!(cache.get_any(ServiceSpec::INFO, "a").is_none());
        let before = cache
            .kind::<HostSpec>()
            .replace(vec![Arc::new(Object::new("b", HostSpec::default()))]);
        assert_eq!(before.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(cache.all_any(HostSpec::INFO).len(), 1);
    }
}
