//! CPU identification instructions (`cpuid`, `xgetbv`) wrapped safely.
