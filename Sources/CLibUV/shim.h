#ifndef DROVER_CLIBUV_SHIM_H
#define DROVER_CLIBUV_SHIM_H

#include <uv.h>
#include <stdio.h>

// Swift 6 strict concurrency refuses the C globals stdout/stderr; these hand them over.
static inline FILE *drover_stdout(void) { return stdout; }
static inline FILE *drover_stderr(void) { return stderr; }

#endif
