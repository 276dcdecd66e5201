/*
 * Gradual sparsity schedules with SparseML semantics (docs/pruning.md):
 * progress p = (e - start) / (end - start), e the epoch rounded down to the
 * last update step start + k*update_frequency, and
 *   linear:        y = init + (final - init) * p
 *   cubic:         y = init + (final - init) * (1 - (1 - p)^3)   (Zhu & Gupta)
 *   inverse_cubic: y = init + (final - init) * (1 - (1 - p)^(1/3))
 * which is sparseml.utils.interpolate (values within machine epsilon of the
 * ends snap to init/final, as there).
 */
#include <float.h>
#include <math.h>
#include <strings.h>

#include "sparsify/prune.h"

sp_status sp_inter_func_parse(sp_inter_func *out, const char *text, sp_error *err)
{
    if (text && !strcasecmp(text, "cubic"))
        *out = SP_INTER_CUBIC;
    else if (text && !strcasecmp(text, "linear"))
        *out = SP_INTER_LINEAR;
    else if (text && !strcasecmp(text, "inverse_cubic"))
        *out = SP_INTER_INVERSE_CUBIC;
    else
        return sp_error_set(err, SP_ERR_INVALID_ARG,
                            "'%s' is not one of cubic, linear, inverse_cubic", text ? text : "");
    return SP_OK;
}

const char *sp_inter_func_str(sp_inter_func f)
{
    switch (f) {
    case SP_INTER_LINEAR: return "linear";
    case SP_INTER_INVERSE_CUBIC: return "inverse_cubic";
    default: return "cubic";
    }
}

double sp_schedule_sparsity(double init, double final, double start_epoch, double end_epoch,
                            double update_frequency, sp_inter_func f, double epoch)
{
    if (epoch < start_epoch)
        return init;
    if (end_epoch <= start_epoch || epoch >= end_epoch)
        return final;
    double e = epoch;
    if (update_frequency > 0.0) {
        /* the mask changes only at start + k*update_frequency; the small
         * slack keeps 0.3 / 0.1 from rounding down to step 2 */
        double steps = floor((epoch - start_epoch) / update_frequency + 1e-9);
        e = start_epoch + steps * update_frequency;
        if (e >= end_epoch)
            return final;
    }
    double p = (e - start_epoch) / (end_epoch - start_epoch);
    if (p < 0.0)
        p = 0.0;
    if (p > 1.0)
        p = 1.0;
    double y;
    switch (f) {
    case SP_INTER_LINEAR: y = p; break;
    case SP_INTER_INVERSE_CUBIC: y = 1.0 - cbrt(1.0 - p); break;
    default: y = 1.0 - (1.0 - p) * (1.0 - p) * (1.0 - p); break;
    }
    if (y <= DBL_EPSILON)
        return init;
    if (y >= 1.0 - DBL_EPSILON)
        return final;
    return init + y * (final - init);
}
