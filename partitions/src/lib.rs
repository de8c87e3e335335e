//! Slot layout: which slot classes a device has, which slots each class holds, and
//! where each slot lives.
