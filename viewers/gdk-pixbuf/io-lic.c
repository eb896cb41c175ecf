/*
 * A gdk-pixbuf loader module for .lic files, over lic's C library (capi/include/lic.h): GNOME's
 * image viewers, file-manager thumbnails and any GdkPixbuf program open .lic files with it.
 *
 * Incremental, over lic's streaming decoder: the size is told as soon as the header has
 * arrived (the first 44 bytes), a cw picture is shown once its file is complete, and a
 * progressive (rnn) file is shown after each layer, sharper each time. Pixels are RGBA8 (grey
 * expanded, a missing alpha 255); the file's ICC profile is attached as the pixbuf's
 * "icc-profile" option (base64), as gdk-pixbuf's own PNG loader does.
 * Build and test: viewers/gdk-pixbuf/test.sh.
 */
#define GDK_PIXBUF_ENABLE_BACKEND
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <gdk-pixbuf/gdk-pixbuf-io.h>
#undef GDK_PIXBUF_ENABLE_BACKEND

#include "lic.h"

typedef struct {
    GdkPixbufModuleSizeFunc size_func;
    GdkPixbufModulePreparedFunc prepared_func;
    GdkPixbufModuleUpdatedFunc updated_func;
    gpointer user_data;
    LicStream *stream;
    /* The file's bytes so far, for its ICC profile (the metadata chunks precede the coded ones). */
    GByteArray *data;
    GdkPixbuf *pixbuf;
    /* Pictures shown so far. */
    int pictures;
    gboolean done;
} LicContext;

static void set_error(GError **error, int status, const char *what) {
    int code = status == LIC_ERR_LIMITS ? GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY
             : status == LIC_ERR_WEIGHTS ? GDK_PIXBUF_ERROR_UNSUPPORTED_OPERATION
                                         : GDK_PIXBUF_ERROR_CORRUPT_IMAGE;
    g_set_error(error, GDK_PIXBUF_ERROR, code, "lic: %s: %s", what, lic_last_error());
}

static gpointer begin_load(GdkPixbufModuleSizeFunc size_func,
                           GdkPixbufModulePreparedFunc prepared_func,
                           GdkPixbufModuleUpdatedFunc updated_func, gpointer user_data,
                           GError **error) {
    LicStream *stream = lic_stream_new();
    if (stream == NULL) {
        set_error(error, LIC_ERR_INTERNAL, "weights");
        return NULL;
    }
    LicContext *c = g_new0(LicContext, 1);
    c->size_func = size_func;
    c->prepared_func = prepared_func;
    c->updated_func = updated_func;
    c->user_data = user_data;
    c->stream = stream;
    c->data = g_byte_array_new();
    return c;
}

/* The header has arrived: tell the size, make the pixbuf, hand it out (still empty). */
static gboolean on_header(LicContext *c, const LicInfo *info, GError **error) {
    gint w = (gint)info->width, h = (gint)info->height;
    if (c->size_func) {
        c->size_func(&w, &h, c->user_data);
    }
    c->pixbuf = gdk_pixbuf_new(GDK_COLORSPACE_RGB, TRUE, 8, (int)info->width, (int)info->height);
    if (c->pixbuf == NULL) {
        g_set_error(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_INSUFFICIENT_MEMORY,
                    "lic: no memory for a %ux%u picture", info->width, info->height);
        return FALSE;
    }
    gdk_pixbuf_fill(c->pixbuf, 0);
    if (c->prepared_func) {
        c->prepared_func(c->pixbuf, NULL, c->user_data);
    }
    return TRUE;
}

/* A picture is ready (the whole file, or one more layer of a progressive one): show it. */
static gboolean on_picture(LicContext *c, GError **error) {
    int st = lic_stream_picture_into(c->stream, gdk_pixbuf_get_pixels(c->pixbuf),
                                     gdk_pixbuf_get_byte_length(c->pixbuf),
                                     (size_t)gdk_pixbuf_get_rowstride(c->pixbuf));
    if (st != LIC_OK) {
        set_error(error, st, "picture");
        return FALSE;
    }
    if (gdk_pixbuf_get_option(c->pixbuf, "icc-profile") == NULL) {
        const uint8_t *icc = NULL;
        size_t len = 0;
        if (lic_icc_profile(c->data->data, c->data->len, &icc, &len) == LIC_OK && icc != NULL) {
            gchar *b64 = g_base64_encode(icc, len);
            gdk_pixbuf_set_option(c->pixbuf, "icc-profile", b64);
            g_free(b64);
        }
    }
    c->pictures++;
    if (c->updated_func) {
        c->updated_func(c->pixbuf, 0, 0, gdk_pixbuf_get_width(c->pixbuf),
                        gdk_pixbuf_get_height(c->pixbuf), c->user_data);
    }
    return TRUE;
}

/* Reports everything the bytes so far allow. */
static gboolean advance(LicContext *c, GError **error) {
    for (;;) {
        LicEvent ev;
        int st = lic_stream_poll(c->stream, &ev);
        if (st != LIC_OK) {
            set_error(error, st, "decode");
            return FALSE;
        }
        switch (ev.kind) {
        case LIC_EVENT_HEADER:
            if (!on_header(c, &ev.info, error)) {
                return FALSE;
            }
            break;
        case LIC_EVENT_PICTURE:
            if (!on_picture(c, error)) {
                return FALSE;
            }
            break;
        case LIC_EVENT_DONE:
            c->done = TRUE;
            return TRUE;
        default:
            return TRUE;
        }
    }
}

static gboolean load_increment(gpointer context, const guchar *buf, guint size, GError **error) {
    LicContext *c = context;
    g_byte_array_append(c->data, buf, size);
    if (lic_stream_push(c->stream, buf, size) != LIC_OK) {
        set_error(error, LIC_ERR_INTERNAL, "push");
        return FALSE;
    }
    return advance(c, error);
}

static gboolean stop_load(gpointer context, GError **error) {
    LicContext *c = context;
    gboolean ok = advance(c, error);
    if (ok && !c->done) {
        /* A cut file: decode it whole to report why (a progressive file cut after a layer
         * decodes; its complete layers are then shown). */
        LicInfo info;
        int st = lic_info(c->data->data, c->data->len, &info);
        if (st != LIC_OK) {
            set_error(error, st, "file");
            ok = FALSE;
        } else if (c->pictures == 0) {
            g_set_error(error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_CORRUPT_IMAGE,
                        "lic: the file ends before its first picture");
            ok = FALSE;
        }
    }
    if (c->pixbuf != NULL) {
        g_object_unref(c->pixbuf);
    }
    lic_stream_free(c->stream);
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
