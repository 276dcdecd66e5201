/*
 * What a recipe's training modifiers ask of a fine-tuning run: the number
 * of epochs, the learning rate and the weight decay at a given (fractional)
 * epoch, with SparseML's formulas (sparseml/pytorch/sparsification/training/
 * modifier_lr.py):
 *
 *   SetLearningRateModifier       learning_rate from start_epoch on
 *   LearningRateFunctionModifier  between start and end, then its last value:
 *     linear         init + (e - start) / (end - start) * (final - init)
 *     cosine         half a cosine from init to final (or up from init)
 *     cyclic_linear  linear from init towards final, restarting every
 *                    cycle_epochs (counted in steps, as SparseML does)
 *   LearningRateModifier          init_lr times gamma^k, where k counts
 *                    step_size epochs (StepLR), milestones passed
 *                    (MultiStepLR) or whole epochs (ExponentialLR), counted in
 *                    optimizer steps from start_epoch until end_epoch
 *
 * When several modifiers set the rate, the one that changed it last wins
 * (a later one in the recipe on a tie), as in SparseML where each writes
 * the optimizer's rate on its own schedule: a function modifier every step
 * while it runs, a torch scheduler when it crosses a step, milestone or
 * epoch, SetLearningRateModifier once.
 */
#include <math.h>
#include <stdbool.h>

#include "sparsify/recipe.h"

#define EPS 1e-9

bool sp_recipe_epochs(const sp_recipe *r, double *epochs)
{
    bool found = false;
    for (size_t i = 0; i < r->nmods; i++)
        if (r->mods[i].type == SP_MOD_EPOCH_RANGE && (!found || r->mods[i].end_epoch > *epochs)) {
            *epochs = r->mods[i].end_epoch;
            found = true;
        }
    return found;
}

static bool sets_lr(const sp_modifier *m)
{
    return m->type == SP_MOD_SET_LR || m->type == SP_MOD_LR_FUNCTION ||
           m->type == SP_MOD_LR_SCHEDULE;
}

bool sp_recipe_has_lr(const sp_recipe *r)
{
    for (size_t i = 0; i < r->nmods; i++)
        if (sets_lr(&r->mods[i]))
            return true;
    return false;
}

bool sp_recipe_has_weight_decay(const sp_recipe *r)
{
    for (size_t i = 0; i < r->nmods; i++)
        if (r->mods[i].type == SP_MOD_SET_WEIGHT_DECAY)
            return true;
    return false;
}

static double lr_function(const sp_modifier *m, double e, long spe)
{
    double start = m->start_epoch > 0 ? m->start_epoch : 0.0, end = m->end_epoch;
    double x = (e - start) / (end - start);
    switch (m->lr_func) {
    case SP_LRF_LINEAR:
        return m->init_lr + x * (m->final_lr - m->init_lr);
    case SP_LRF_COSINE: {
        double range, shift, xs;
        if (m->final_lr < m->init_lr) {
            range = m->init_lr - m->final_lr;
            shift = m->final_lr;
            xs = 0.0;
        } else {
            range = m->final_lr - m->init_lr;
            shift = m->init_lr;
            xs = M_PI;
        }
        return cos(x * M_PI + xs) * range / 2 + range / 2 + shift;
    }
    case SP_LRF_CYCLIC_LINEAR: {
        double s = spe > 0 ? (double)spe : 1.0;
        double end_step = end * s, start_step = m->start_epoch * s;
        double cycle = m->cycle_epochs * s, cur = (e - m->start_epoch) * s;
        if (cur > floor((end_step - start_step) / cycle) * cycle)
            cycle = fmod(end_step - start_step, cycle);
        if (cycle <= 1.0)
            return m->init_lr;
        double adj = fmod(cur, cycle);
        return m->init_lr - adj / (cycle - 1.0) * (m->init_lr - m->final_lr);
    }
    }
    return m->init_lr;
}

/* A torch scheduler changes the rate only when k (optimizer steps since
 * start_epoch) crosses a boundary: the value, and *t, the epoch of the
 * last change (start_epoch, when it set init_lr). */
static double lr_schedule(const sp_modifier *m, double e, long spe, double *t)
{
    double s = spe > 0 ? (double)spe : 1.0;
    double k = round(e * s) - round(m->start_epoch * s); /* optimizer steps taken */
    double n = 0, last = 0;                              /* gamma's power; its step */
    switch (m->lr_class) {
    case SP_LRC_STEP: {
        double step = round(m->step_size * s);
        n = step > 0 ? floor(k / step) : 0;
        last = n * step;
        break;
    }
    case SP_LRC_EXPONENTIAL:
        n = floor(k / s);
        last = n * s;
        break;
    case SP_LRC_MULTISTEP:
        for (size_t i = 0; i < m->nmilestones; i++) {
            double b = round((m->milestones[i] - m->start_epoch) * s);
            if (k >= b) {
                n++;
                last = b;
            }
        }
        break;
    }
    *t = m->start_epoch + last / s;
    return m->init_lr * pow(m->gamma, n);
}

bool sp_recipe_lr_at(const sp_recipe *r, double epoch, long steps_per_epoch, double *lr)
{
    double best_t = -INFINITY;
    bool found = false;
    for (size_t i = 0; i < r->nmods; i++) {
        const sp_modifier *m = &r->mods[i];
        if (!sets_lr(m) || epoch + EPS < m->start_epoch)
            continue;
        double t, v;
        bool ended = m->end_epoch >= 0 && epoch >= m->end_epoch;
        if (m->type == SP_MOD_SET_LR) {
            t = m->start_epoch;
            v = m->learning_rate;
        } else if (m->type == SP_MOD_LR_FUNCTION) {
            t = ended ? m->end_epoch : epoch;
            /* after its end, the value of its last step (cyclic_linear
             * rewinds at the end itself) */
            double at = t;
            if (ended && m->lr_func == SP_LRF_CYCLIC_LINEAR)
                at = m->end_epoch - 1.0 / (steps_per_epoch > 0 ? (double)steps_per_epoch : 1.0);
            v = lr_function(m, at, steps_per_epoch);
        } else {
            v = lr_schedule(m, ended ? m->end_epoch : epoch, steps_per_epoch, &t);
        }
        if (t >= best_t) {
            best_t = t;
            *lr = v;
            found = true;
        }
    }
    return found;
}

bool sp_recipe_weight_decay_at(const sp_recipe *r, double epoch, double *wd)
{
    double best = -INFINITY;
    bool found = false;
    for (size_t i = 0; i < r->nmods; i++) {
        const sp_modifier *m = &r->mods[i];
        if (m->type != SP_MOD_SET_WEIGHT_DECAY || epoch + EPS < m->start_epoch)
            continue;
        if (m->start_epoch >= best) {
            best = m->start_epoch;
            *wd = m->weight_decay;
            found = true;
        }
    }
    return found;
}
