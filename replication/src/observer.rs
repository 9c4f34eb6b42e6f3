//! [`ElementObserver`]: how a server learns that the engine made, replaced
//! or deleted a replica element, so it can serve it (ironlun serve adds
//! replicas as LUNs) without polling the engine.

use crate::synchronization::ElementRef;

/// Told about changes to the elements the engine manages.
pub trait ElementObserver: Send + Sync {
    /// `element` (a replica the engine made) is about to be deleted or
    /// re-created under the same name (a snapshot's new point in time):
    /// stop using it now. Called with the engine's state locked: the
    /// observer must not call back into the engine from here.
    fn releasing(&self, element: &ElementRef);

    /// Synchronizations or their elements changed (a replica was made,
    /// re-created, or a relationship ended). Called with no engine lock
    /// held, before the method that made the change returns.
    fn changed(&self);
}
