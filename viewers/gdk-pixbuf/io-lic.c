/*
 * A gdk-pixbuf loader module for .lic files, over lic's C library (capi/include/lic.h): GNOME's
 * image viewers, file-manager thumbnails and any GdkPixbuf program open .lic files with it.
 *
 * Incremental: the bytes are gathered as they arrive, the size is told as soon as the header
 * has (lic_probe on the first 44 bytes), and the picture is decoded when the file is complete.
 * Pixels are RGBA8 (grey expanded, a missing alpha 255); the file's ICC profile is attached as
 * the pixbuf's "icc-profile" option (base64), as gdk-pixbuf's own PNG loader does.
 * Build and test: viewers/gdk-pixbuf/test.sh.
 */
#include <stdlib.h>
#include <string.h>

#define GDK_PIXBUF_ENABLE_BACKEND
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <gdk-pixbuf/gdk-pixbuf-io.h>
#undef GDK_PIXBUF_ENABLE_BACKEND

#include "lic.h"

/* The signature and HEAD chunk: what lic_probe needs to tell the size. */
#define HEADER_BYTES 44

typedef struct {
    GdkPixbufModuleSizeFunc size_func;
    GdkPixbufModulePreparedFunc prepared_func;
    GdkPixbufModuleUpdatedFunc updated_func;
    gpointer user_data;
    GByteArray *data;
    gboolean size_told;
} LicContext;

static void set_error(GError **error, int status, const char *what) {
    int code = status == LIC_ERR_LIMITS ? GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY
             : status == LIC_ERR_WEIGHTS ? GDK_PIXBUF_ERROR_UNSUPPORTED_OPERATION
                                         : GDK_PIXBUF_ERROR_CORRUPT_IMAGE;
    g_set_error(error, GDK_PIXBUF_ERROR, code, "lic: %s: %s", what, lic_last_error());
}

/* Tells the caller the picture's size once; false if the header is bad. */
static gboolean tell_size(LicContext *c, GError **error) {
    if (c->size_told) {
        return TRUE;
    }
    LicInfo info;
    int st = lic_probe(c->data->data, c->data->len, &info);
    if (st != LIC_OK) {
        set_error(error, st, "header");
        return FALSE;
    }
    c->size_told = TRUE;
    if (c->size_func) {
        gint w = (gint)info.width, h = (gint)info.height;
        c->size_func(&w, &h, c->user_data);
    }
    return TRUE;
}

static gpointer begin_load(GdkPixbufModuleSizeFunc size_func,
                           GdkPixbufModulePreparedFunc prepared_func,
                           GdkPixbufModuleUpdatedFunc updated_func, gpointer user_data,
                           GError **error) {
    (void)error;
    LicContext *c = g_new0(LicContext, 1);
    c->size_func = size_func;
    c->prepared_func = prepared_func;
    c->updated_func = updated_func;
    c->user_data = user_data;
    c->data = g_byte_array_new();
    return c;
}

static gboolean load_increment(gpointer context, const guchar *buf, guint size, GError **error) {
    LicContext *c = context;
    g_byte_array_append(c->data, buf, size);
    if (c->data->len >= HEADER_BYTES) {
        return tell_size(c, error);
    }
    return TRUE;
}

/* The file's ICC profile, base64, or NULL. */
static gchar *icc_base64(const LicContext *c) {
    size_t len = 0;
    const uint8_t *icc = NULL;
    if (lic_icc_profile(c->data->data, c->data->len, &icc, &len) != LIC_OK || icc == NULL) {
        return NULL;
    }
    return g_base64_encode(icc, len);
}

static gboolean stop_load(gpointer context, GError **error) {
    LicContext *c = context;
    gboolean ok = FALSE;
    LicInfo info;
    GdkPixbuf *pixbuf = NULL;
    if (!tell_size(c, error)) {
        goto out;
    }
    int st = lic_probe(c->data->data, c->data->len, &info);
    if (st != LIC_OK) {
        set_error(error, st, "header");
        goto out;
    }
    pixbuf = gdk_pixbuf_new(GDK_COLORSPACE_RGB, TRUE, 8, (int)info.width, (int)info.height);
    if (pixbuf == NULL) {
        g_set_error(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY,
                    "lic: no memory for a %ux%u picture", info.width, info.height);
        goto out;
    }
    st = lic_decode_into(c->data->data, c->data->len, NULL, NULL, 0,
                         gdk_pixbuf_get_pixels(pixbuf), gdk_pixbuf_get_byte_length(pixbuf),
                         (size_t)gdk_pixbuf_get_rowstride(pixbuf));
    if (st != LIC_OK) {
        set_error(error, st, "decode");
        goto out;
    }
    gchar *icc = icc_base64(c);
    if (icc != NULL) {
        gdk_pixbuf_set_option(pixbuf, "icc-profile", icc);
        g_free(icc);
    }
    if (c->prepared_func) {
        c->prepared_func(pixbuf, NULL, c->user_data);
    }
    if (c->updated_func) {
        c->updated_func(pixbuf, 0, 0, (int)info.width, (int)info.height, c->user_data);
    }
    ok = TRUE;
out:
    if (pixbuf != NULL) {
        g_object_unref(pixbuf);
    }
    g_byte_array_unref(c->data);
    g_free(c);
    return ok;
}

G_MODULE_EXPORT void fill_vtable(GdkPixbufModule *module) {
    module->begin_load = begin_load;
    module->stop_load = stop_load;
    module->load_increment = load_increment;
}

G_MODULE_EXPORT void fill_info(GdkPixbufFormat *info) {
    static GdkPixbufModulePattern signature[] = {
        {"\211LIC\r\n\032\n", NULL, 100},
        {NULL, NULL, 0},
    };
    static gchar *mime_types[] = {"image/x-lic", NULL};
    static gchar *extensions[] = {"lic", NULL};
    info->name = "lic";
    info->signature = signature;
    info->description = "lic learned image codec";
    info->mime_types = mime_types;
    info->extensions = extensions;
    info->flags = GDK_PIXBUF_FORMAT_THREADSAFE;
    info->license = "MIT";
}
