/* The pipeline made visible: vie_app_describe and /debug/pipeline. */
#ifndef VIE_CORE_DESCRIBE_H
#define VIE_CORE_DESCRIBE_H

#include "vie/vie.h"

const char *pipeline_phase_name(vie_phase p);

/* GET /debug/pipeline: the JSON description, with live counters. */
vie_status describe_debug_handler(vie_ctx *c, void *arg);

#endif
