/*
 * lic.h: C interface to the lic decoder (liblic_capi). Decodes .lic files to 8-bit pixels
 * with the weights built into the library. Every function is safe to call with any bytes:
 * bad input gives an error code, never a crash. Thread-safe; error messages are per thread.
 */
#ifndef LIC_H
#define LIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
#define LIC_OK 0
#define LIC_ERR_ARGUMENT 1 /* a null pointer or an impossible argument */
#define LIC_ERR_FORMAT 2   /* not a .lic file, truncated, corrupt (CRC), bad entropy data */
#define LIC_ERR_LIMITS 3   /* the image exceeds the caller's limits */
#define LIC_ERR_WEIGHTS 4  /* the file needs weights this library does not have */
#define LIC_ERR_INTERNAL 5 /* out of memory or an internal failure */

/* Decoder limits, checked against the header before anything is allocated. */
typedef struct LicLimits {
    uint32_t max_width;  /* default 65536 */
    uint32_t max_height; /* default 65536 */
    uint64_t max_pixels; /* default 64 Mi pixels */
    uint64_t max_memory; /* default 2 GiB: the decoder's estimate of what it allocates */
} LicLimits;

/* What the header says (no network is run to get it). */
typedef struct LicInfo {
    uint32_t width;
    uint32_t height;
    uint32_t channels;  /* of the coded image: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
    float quality;      /* the -q the file was made with, 0..1 */
    uint64_t file_bytes;
} LicInfo;

/* The default limits. */
LicLimits lic_default_limits(void);

/* Reads the header and checks every chunk's CRC (the whole file is needed). */
int lic_info(const uint8_t *data, size_t len, LicInfo *out);

/* Reads the header from the first bytes of a file (the first 44 bytes of every file hold it),
 * for loaders that see a prefix first; file_bytes is set to 0 (unknown). */
int lic_probe(const uint8_t *data, size_t len, LicInfo *out);

/* The library's version, "MAJOR.MINOR.PATCH" (a static string). */
const char *lic_version(void);

/*
 * Decodes to RGBA8 (grey is expanded, a missing alpha is 255). On success *pixels points to
 * width*height*4 bytes that the caller releases with lic_free(*pixels, width*height*4).
 * limits may be NULL for the defaults.
 */
int lic_decode_rgba8(const uint8_t *data, size_t len, const LicLimits *limits,
                     uint8_t **pixels, uint32_t *width, uint32_t *height);

/* A rectangle of pixels. */
typedef struct LicRegion {
    uint32_t x;
    uint32_t y;
    uint32_t width;
    uint32_t height;
} LicRegion;

/*
 * Decodes RGBA8 (as lic_decode_rgba8) into the caller's buffer: row r of the picture, or of
 * *region (NULL: the whole picture), at dst + r*stride, width*4 bytes each; needs
 * stride >= width*4 and dst_len >= (height-1)*stride + width*4. Only the tiles under a region
 * are decoded; its pixels equal that part of a whole decode. threads > 0 decodes on that many
 * worker threads of its own (the pixels do not depend on it), 0 on one per core.
 */
int lic_decode_into(const uint8_t *data, size_t len, const LicLimits *limits,
                    const LicRegion *region, uint32_t threads, uint8_t *dst, size_t dst_len,
                    size_t stride);

/*
 * Decodes to the file's own layout (LicInfo.channels samples per pixel). Released the same
 * way, with the length written to *out_len.
 */
int lic_decode(const uint8_t *data, size_t len, const LicLimits *limits, uint8_t **pixels,
               size_t *out_len, uint32_t *width, uint32_t *height, uint32_t *channels);

/*
 * Adds a folder, searched first, for the weights of files made with other weights than the
 * embedded ones (files named cw-ID.safetensors). LIC_WEIGHTS_PATH and the user's data folder
 * are searched anyway.
 */
int lic_add_weights_dir(const char *path);

/* Releases pixels returned by a decode function. NULL is ignored. */
void lic_free(uint8_t *pixels, size_t len);

/* A static description of a status code. */
const char *lic_status_string(int status);

/* The message of the last failure on this thread (valid until the next call), or "". */
const char *lic_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* LIC_H */
