/*
 * Loads .lic files through GdkPixbuf itself (with the loader that test.sh registers) and
 * checks, for each file named on the command line: the pixels equal lic_decode_rgba8's; an
 * incremental load in 7-byte pieces tells the size before the last piece and gives the same
 * pixels; the ICC profile, if the file has one, is the pixbuf's "icc-profile" option; a
 * truncated copy gives a GError (a progressive one shows its complete layers) and a
 * corrupted one a GError, never a crash.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>

#include "lic.h"

static int failures = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, __VA_ARGS__);                  \
            fputc('\n', stderr);                           \
            failures++;                                    \
        }                                                  \
    } while (0)

static int same_pixels(GdkPixbuf *pb, const uint8_t *rgba, uint32_t w, uint32_t h) {
    if (gdk_pixbuf_get_width(pb) != (int)w || gdk_pixbuf_get_height(pb) != (int)h ||
        gdk_pixbuf_get_n_channels(pb) != 4) {
        return 0;
    }
    const guchar *px = gdk_pixbuf_read_pixels(pb);
    int stride = gdk_pixbuf_get_rowstride(pb);
    for (uint32_t y = 0; y < h; y++) {
        if (memcmp(px + (size_t)y * stride, rgba + (size_t)y * w * 4, (size_t)w * 4) != 0) {
            return 0;
        }
    }
    return 1;
}

static void on_size(GdkPixbufLoader *loader, gint w, gint h, gpointer told) {
    (void)loader;
    *(gint *)told = w * 100000 + h;
}

static void on_update(GdkPixbufLoader *loader, gint x, gint y, gint w, gint h, gpointer n) {
    (void)loader, (void)x, (void)y, (void)w, (void)h;
    (*(int *)n)++;
}

static GdkPixbuf *load_bytes(const guchar *bytes, gsize len, GError **err) {
    gchar *path = g_strdup_printf("%s/lic-pixbuf-test-%d.lic", g_get_tmp_dir(), (int)getpid());
    g_file_set_contents(path, (const gchar *)bytes, (gssize)len, NULL);
    GdkPixbuf *pb = gdk_pixbuf_new_from_file(path, err);
    g_unlink(path);
    g_free(path);
    return pb;
}

static void check_file(const char *path) {
    gchar *bytes = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &bytes, &len, NULL)) {
        CHECK(0, "%s: cannot read", path);
        return;
    }
    const uint8_t *data = (const uint8_t *)bytes;
    uint8_t *rgba = NULL;
    uint32_t w = 0, h = 0;
    int st = lic_decode_rgba8(data, len, NULL, &rgba, &w, &h);
    CHECK(st == LIC_OK, "%s: lic_decode_rgba8: %s", path, lic_last_error());
    if (st != LIC_OK) {
        g_free(bytes);
        return;
    }

    GError *err = NULL;
    GdkPixbuf *pb = gdk_pixbuf_new_from_file(path, &err);
    CHECK(pb != NULL, "%s: GdkPixbuf: %s", path, err ? err->message : "?");
    if (pb != NULL) {
        CHECK(same_pixels(pb, rgba, w, h), "%s: GdkPixbuf's pixels differ from lic's", path);
        const uint8_t *icc = NULL;
        size_t icc_len = 0;
        lic_icc_profile(data, len, &icc, &icc_len);
        const gchar *opt = gdk_pixbuf_get_option(pb, "icc-profile");
        if (icc == NULL) {
            CHECK(opt == NULL, "%s: an icc-profile option without a profile", path);
        } else {
            gsize n = 0;
            guchar *got = opt ? g_base64_decode(opt, &n) : NULL;
            CHECK(got != NULL && n == icc_len && memcmp(got, icc, n) == 0,
                  "%s: the ICC profile did not survive", path);
            g_free(got);
            printf("%s: ICC profile of %zu bytes carried\n", path, icc_len);
        }
        g_object_unref(pb);
    }
    g_clear_error(&err);

    /* Incrementally, in 7-byte pieces: the size is known before the last piece. */
    GdkPixbufLoader *loader = gdk_pixbuf_loader_new_with_type("lic", &err);
    CHECK(loader != NULL, "%s: no lic loader: %s", path, err ? err->message : "?");
    if (loader != NULL) {
        gint told = -1;
        int updates = 0;
        g_signal_connect(loader, "size-prepared", G_CALLBACK(on_size), &told);
        g_signal_connect(loader, "area-updated", G_CALLBACK(on_update), &updates);
        gboolean ok = TRUE;
        gsize at = 0;
        for (; ok && at + 7 < len; at += 7) {
            ok = gdk_pixbuf_loader_write(loader, (const guchar *)bytes + at, 7, &err);
        }
        CHECK(told == (gint)(w * 100000 + h), "%s: size not told before the end", path);
        ok = ok && gdk_pixbuf_loader_write(loader, (const guchar *)bytes + at, len - at, &err);
        ok = ok && gdk_pixbuf_loader_close(loader, &err);
        CHECK(ok, "%s: incremental load: %s", path, err ? err->message : "?");
        GdkPixbuf *inc = gdk_pixbuf_loader_get_pixbuf(loader);
        CHECK(inc != NULL && same_pixels(inc, rgba, w, h), "%s: incremental pixels differ", path);
        /* One picture per layer: a cw file has one, a progressive file one per layer. */
        printf("%s: %d picture(s) shown while loading\n", path, updates);
        CHECK(updates >= 1, "%s: no picture shown", path);
        g_object_unref(loader);
    }
    g_clear_error(&err);

    /* Cut in half, and one byte in the middle flipped (its chunk's CRC fails). */
    /* A cut progressive file shows its complete layers, as lic decodes them; anything else
     * cut must fail. */
    uint8_t *cut = NULL;
    uint32_t cw = 0, ch = 0;
    int cut_ok = lic_decode_rgba8(data, len / 2, NULL, &cut, &cw, &ch) == LIC_OK;
    GdkPixbuf *bad = load_bytes((const guchar *)bytes, len / 2, &err);
    if (cut_ok) {
        CHECK(bad != NULL && same_pixels(bad, cut, cw, ch),
              "%s: the cut progressive file did not show its complete layers", path);
        if (bad) printf("%s: cut in half: its complete layers shown\n", path);
        lic_free(cut, (size_t)cw * ch * 4);
    } else {
        CHECK(bad == NULL && err != NULL, "%s: a truncated copy loaded", path);
        if (err) printf("%s: truncated: %s\n", path, err->message);
    }
    if (bad) g_object_unref(bad);
    g_clear_error(&err);
    bytes[len / 2 + 1] ^= 0x10;
    bad = load_bytes((const guchar *)bytes, len, &err);
    CHECK(bad == NULL && err != NULL, "%s: a corrupted copy loaded", path);
    if (err) printf("%s: corrupted: %s\n", path, err->message);
    g_clear_error(&err);

    lic_free(rgba, (size_t)w * h * 4);
    g_free(bytes);
    printf("%s: %ux%u through GdkPixbuf, same pixels as lic\n", path, w, h);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        check_file(argv[i]);
    }
    return failures == 0 ? 0 : 1;
}
