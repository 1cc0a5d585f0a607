// Closes the AVX-512 section opened by avx512_begin.h.
#ifdef CANOPY_HAVE_AVX512_TU
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
