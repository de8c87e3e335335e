//! bascule: an A/B image updater.
