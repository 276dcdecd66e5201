/*
 * Bundled recipe templates: names, aliases and summaries. The JSON text of
 * each lives in recipes/templates/<stem>.json and is compiled in by
 * recipes/embed.c, so the files are the single source.
 */
#include <string.h>

#include "recipes/bundled.h"
#include "sparsify/recipe.h"

static const struct {
    const char *name, *alias, *stem, *summary;
} table[] = {
    {"unstructured-50", NULL, "unstructured-50", "one-shot magnitude, 50% unstructured, per layer"},
    {"unstructured-80", NULL, "unstructured-80", "one-shot magnitude, 80% unstructured, per layer"},
    {"unstructured-90", NULL, "unstructured-90", "one-shot magnitude, 90% unstructured, per layer"},
    {"unstructured-95", NULL, "unstructured-95", "one-shot magnitude, 95% unstructured, per layer"},
    {"global-90", NULL, "global-90", "one-shot magnitude, 90% unstructured, one global threshold"},
    {"block4x1-90", NULL, "block4x1-90", "one-shot magnitude, 90% of 4x1 blocks (4 outputs x 1 input)"},
    {"block16x16-80", NULL, "block16x16-80", "one-shot magnitude, 80% of 16x16 blocks"},
    {"2:4", "nm-2-4", "nm-2-4", "2:4 semi-structured: at most 2 nonzeros in every 4 inputs"},
    {"gradual-90", NULL, "gradual-90",
     "gradual magnitude (GMP, cubic) 0 -> 90% over epochs 0-8, mask kept after"},
    {"movement-90", NULL, "movement-90",
     "movement pruning (cubic) 0 -> 90% over epochs 0-8, needs finetune"},
};
#define NTABLE (sizeof table / sizeof table[0])

size_t sp_recipe_bundled_count(void) { return NTABLE; }

const char *sp_recipe_bundled_name(size_t i) { return i < NTABLE ? table[i].name : NULL; }

const char *sp_recipe_bundled_summary(size_t i) { return i < NTABLE ? table[i].summary : NULL; }

const char *sp_recipe_bundled_text(size_t i)
{
    if (i >= NTABLE)
        return NULL;
    for (size_t f = 0; f < sp_bundled_nfiles; f++)
        if (!strcmp(sp_bundled_files[f].stem, table[i].stem))
            return sp_bundled_files[f].text;
    return NULL;
}

long sp_recipe_bundled_find(const char *name)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (!strcmp(name, table[i].name) || (table[i].alias && !strcmp(name, table[i].alias)))
            return (long)i;
    return -1;
}

const char *sp_recipe_bundled_closest(const char *name)
{
    const char *names[2 * NTABLE];
    size_t n = 0;
    for (size_t i = 0; i < NTABLE; i++) {
        names[n++] = table[i].name;
        if (table[i].alias)
            names[n++] = table[i].alias;
    }
    return sp_closest_name(name, names, n);
}
