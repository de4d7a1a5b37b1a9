"""Offline data: experts, collection, HDF5 store, importer, segment sampler."""
