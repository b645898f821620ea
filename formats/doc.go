// Package formats holds chsnap's pure encoders and decoders — the snapshot
// archive (specified in SPEC.md), disk images, cpio — with no KVM and no
// device code, so that every one of them can be unit-tested and fuzzed.
package formats
