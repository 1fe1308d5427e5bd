/*
 * NNTM_API marks the functions of the public interface (nntm.h, nntm_stream.h).
 * The library is compiled with hidden visibility (CMake: C_VISIBILITY_PRESET
 * hidden), so that a shared libnntm exports these functions and nothing else:
 * the stages' internal functions (also nntm_-prefixed) stay private.
 * lib/tests/test_exports.sh checks the exported set against these headers.
 */
#ifndef NNTM_NNTM_EXPORT_H
#define NNTM_NNTM_EXPORT_H

#if defined(_WIN32) && defined(NNTM_BUILDING_SHARED)
#define NNTM_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define NNTM_API __attribute__((visibility("default")))
#else
#define NNTM_API
#endif

#endif /* NNTM_NNTM_EXPORT_H */
