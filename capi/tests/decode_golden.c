/* Decodes a golden .lic file through the C ABI and prints its size, channel count and the
 * FNV-1a-64 hash of the decoded samples; also checks that errors come back as codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lic.h"

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Counts the tiles lic_decode_into reports. */
static int32_t count_tiles(size_t done, size_t total, void *user) {
    (void)total;
    *(size_t *)user = done;
    return 1;
}

/* Cancels at the first tile. */
static int32_t cancel(size_t done, size_t total, void *user) {
    (void)done, (void)total, (void)user;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE.lic\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);

    LicInfo info;
    int st = lic_info(buf, len, &info);
    if (st != LIC_OK) { fprintf(stderr, "info: %s: %s\n", lic_status_string(st), lic_last_error()); return 1; }

    /* The header from a prefix, as a loader sees the file arrive. */
    LicInfo probe;
    st = lic_probe(buf, 44, &probe);
    if (st != LIC_OK) { fprintf(stderr, "probe: %s\n", lic_last_error()); return 1; }
    if (probe.width != info.width || probe.height != info.height || probe.channels != info.channels
        || probe.quality != info.quality || probe.file_bytes != 0) {
        fprintf(stderr, "probe disagrees with info\n");
        return 1;
    }
    if (lic_probe(buf, 43, &probe) != LIC_ERR_FORMAT || lic_info(buf, 44, &info) != LIC_ERR_FORMAT) {
        fprintf(stderr, "a prefix too short for the header, or lic_info on a prefix, did not fail\n");
        return 1;
    }
    /* The golden files carry no ICC profile or EXIF. */
    const uint8_t *meta = buf;
    size_t meta_len = 1;
    if (lic_icc_profile(buf, len, &meta, &meta_len) != LIC_OK || meta != NULL || meta_len != 0
        || lic_exif(buf, len, &meta, &meta_len) != LIC_OK || meta != NULL) {
        fprintf(stderr, "metadata where there is none\n");
        return 1;
    }
    if (strncmp(lic_version(), "0.", 2) != 0) { fprintf(stderr, "version %s\n", lic_version()); return 1; }
    lic_info(buf, len, &info);

    uint8_t *px = NULL;
    size_t n = 0;
    uint32_t w = 0, h = 0, c = 0;
    st = lic_decode(buf, len, NULL, &px, &n, &w, &h, &c);
    if (st != LIC_OK) { fprintf(stderr, "decode: %s: %s\n", lic_status_string(st), lic_last_error()); return 1; }
    if (w != info.width || h != info.height || c != info.channels || n != (size_t)w * h * c) {
        fprintf(stderr, "decode disagrees with info\n");
        return 1;
    }
    printf("%u %u %u %016llx\n", w, h, c, (unsigned long long)fnv1a(px, n));
    lic_free(px, n);

    uint8_t *rgba = NULL;
    st = lic_decode_rgba8(buf, len, NULL, &rgba, &w, &h);
    if (st != LIC_OK) { fprintf(stderr, "rgba: %s\n", lic_last_error()); return 1; }

    /* Into a buffer of the caller's with padded rows, on one thread, then a region of it. */
    size_t stride = (size_t)w * 4 + 12;
    uint8_t *mine = calloc((size_t)h * stride, 1);
    size_t tiles = 0;
    st = lic_decode_into(buf, len, NULL, NULL, 1, count_tiles, &tiles, mine, (size_t)h * stride, stride);
    if (st != LIC_OK) { fprintf(stderr, "into: %s\n", lic_last_error()); return 1; }
    for (uint32_t y = 0; y < h; y++) {
        if (memcmp(mine + y * stride, rgba + (size_t)y * w * 4, (size_t)w * 4) != 0) {
            fprintf(stderr, "lic_decode_into differs from lic_decode_rgba8 in row %u\n", y);
            return 1;
        }
    }
    if (tiles == 0) { fprintf(stderr, "no progress reported\n"); return 1; }
    st = lic_decode_into(buf, len, NULL, NULL, 0, cancel, NULL, mine, (size_t)h * stride, stride);
    if (st != LIC_ERR_CANCELLED) { fprintf(stderr, "cancelling gave %d\n", st); return 1; }
    LicRegion r = { w / 3, h / 4, w / 2, h / 2 };
    uint8_t part[256 * 4 * 256];
    st = lic_decode_into(buf, len, NULL, &r, 0, NULL, NULL, part, sizeof part, (size_t)r.width * 4);
    if (st != LIC_OK) { fprintf(stderr, "region: %s\n", lic_last_error()); return 1; }
    for (uint32_t y = 0; y < r.height; y++) {
        if (memcmp(part + (size_t)y * r.width * 4, rgba + ((size_t)(r.y + y) * w + r.x) * 4,
                   (size_t)r.width * 4) != 0) {
            fprintf(stderr, "region row %u differs from the whole decode\n", y);
            return 1;
        }
    }
    /* Incrementally, in 5-byte pieces: the header first, then one picture, then done. */
    LicStream *stream = lic_stream_new();
    if (!stream) { fprintf(stderr, "stream: %s\n", lic_last_error()); return 1; }
    int header_at = -1, pictures = 0, done = 0;
    for (size_t at = 0; at < len && !done; at += 5) {
        size_t n = len - at < 5 ? len - at : 5;
        if (lic_stream_push(stream, buf + at, n) != LIC_OK) { fprintf(stderr, "push\n"); return 1; }
        for (;;) {
            LicEvent ev;
            if (lic_stream_poll(stream, &ev) != LIC_OK) { fprintf(stderr, "poll: %s\n", lic_last_error()); return 1; }
            if (ev.kind == LIC_EVENT_NEED_MORE_DATA) break;
            if (ev.kind == LIC_EVENT_DONE) { done = 1; break; }
            if (ev.kind == LIC_EVENT_HEADER) {
                header_at = (int)(at + n);
                if (ev.info.width != w || ev.info.height != h) { fprintf(stderr, "stream header\n"); return 1; }
            }
            if (ev.kind == LIC_EVENT_PICTURE) {
                pictures++;
                memset(mine, 0, (size_t)h * stride);
                if (lic_stream_picture_into(stream, mine, (size_t)h * stride, stride) != LIC_OK) { fprintf(stderr, "picture: %s\n", lic_last_error()); return 1; }
                for (uint32_t y = 0; y < h; y++) {
                    if (memcmp(mine + y * stride, rgba + (size_t)y * w * 4, (size_t)w * 4) != 0) {
                        fprintf(stderr, "streamed picture differs in row %u\n", y);
                        return 1;
                    }
                }
            }
        }
    }
    lic_stream_free(stream);
    if (header_at < 0 || header_at > 45 || pictures != 1 || !done) {
        fprintf(stderr, "stream: header at %d, %d pictures, done %d\n", header_at, pictures, done);
        return 1;
    }

    /* A stride too small, and a region outside the picture. */
    if (lic_decode_into(buf, len, NULL, NULL, 0, NULL, NULL, mine, (size_t)h * stride, (size_t)w * 4 - 1) != LIC_ERR_ARGUMENT) {
        fprintf(stderr, "a short stride was accepted\n");
        return 1;
    }
    LicRegion outside = { w, 0, 1, 1 };
    if (lic_decode_into(buf, len, NULL, &outside, 0, NULL, NULL, part, sizeof part, 4) == LIC_OK) {
        fprintf(stderr, "a region outside the picture was accepted\n");
        return 1;
    }
    free(mine);
    lic_free(rgba, (size_t)w * h * 4);

    /* Limits smaller than the image: refused before decoding. */
    LicLimits tiny = lic_default_limits();
    tiny.max_width = 1;
    st = lic_decode_rgba8(buf, len, &tiny, &rgba, &w, &h);
    if (st != LIC_ERR_LIMITS) { fprintf(stderr, "tiny limits gave %d\n", st); return 1; }
    /* A truncated file and a NULL pointer. */
    st = lic_decode_rgba8(buf, len / 2, NULL, &rgba, &w, &h);
    if (st != LIC_ERR_FORMAT || strlen(lic_last_error()) == 0) { fprintf(stderr, "truncated gave %d\n", st); return 1; }
    st = lic_info(NULL, 0, &info);
    if (st != LIC_ERR_ARGUMENT) { fprintf(stderr, "NULL gave %d\n", st); return 1; }
    return 0;
}
