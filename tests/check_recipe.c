/* Unit tests for recipes/: parsing, validation messages, bundled templates,
 * and the modifier queries. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "recipes/expr.h"
#include "sparsify/recipe.h"

static sp_recipe *parse_ok(const char *json)
{
    sp_recipe *r = NULL;
    sp_error err = {0};
    sp_status st = sp_recipe_parse(&r, json, strlen(json), &err);
    ck_assert_msg(st == SP_OK, "parse failed: %s (%s)", err.msg, json);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* The message without its position ("line 3: ", "line 1, column 9: "). */
static const char *no_line(const char *msg)
{
    if (strncmp(msg, "line ", 5))
        return msg;
    const char *p = strstr(msg, ": ");
    return p ? p + 2 : msg;
}

static void parse_err(const char *json, const char *want)
{
    sp_recipe *r = (sp_recipe *)1;
    sp_error err = {0};
    sp_status st = sp_recipe_parse(&r, json, strlen(json), &err);
    ck_assert_msg(st == SP_ERR_INVALID_ARG, "expected an error for %s (%d: %s)", json, st, err.msg);
    ck_assert_ptr_null(r);
    ck_assert_msg(!strcmp(no_line(err.msg), want), "for %s\n got: %s\nwant: %s", json, err.msg,
                  want);
}

/* Parse text and return every problem; *st gets the status. */
static sp_recipe_problems problems_of(const char *text, bool substitute, sp_status *st,
                                      sp_recipe **out)
{
    sp_recipe_problems p;
    sp_recipe_opts o = {.substitute = substitute};
    sp_error err = {0};
    sp_recipe *r = NULL;
    *st = sp_recipe_parse_ex(&r, text, strlen(text), &o, &p, &err);
    if (out)
        *out = r;
    else
        sp_recipe_free(r);
    return p;
}

#define MOD(fields) "{\"version\": 1, \"modifiers\": [" fields "]}"

START_TEST(test_parse_types)
{
    struct {
        const char *name;
        sp_modifier_type t;
    } names[] = {
        {"MagnitudePruningModifier", SP_MOD_MAGNITUDE},
        {"magnitude", SP_MOD_MAGNITUDE},
        {"GMPruningModifier", SP_MOD_GMP},
        {"!GMPruningModifier", SP_MOD_GMP},
        {"gradual_magnitude", SP_MOD_GMP},
        {"GlobalMagnitudePruningModifier", SP_MOD_GLOBAL_MAGNITUDE},
        {"global_magnitude", SP_MOD_GLOBAL_MAGNITUDE},
        {"MovementPruningModifier", SP_MOD_MOVEMENT},
        {"movement", SP_MOD_MOVEMENT},
    };
    char buf[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(buf, sizeof buf, MOD("{\"type\": \"%s\", \"final_sparsity\": 0.7}"), names[i].name);
        sp_recipe *r = parse_ok(buf);
        ck_assert_uint_eq(r->nmods, 1);
        ck_assert_int_eq(r->mods[0].type, names[i].t);
        ck_assert_double_eq(r->mods[0].final_sparsity, 0.7);
        ck_assert_double_eq(r->mods[0].init_sparsity, 0.7); /* one-shot */
        ck_assert_int_eq(r->mods[0].global_sparsity, names[i].t == SP_MOD_GLOBAL_MAGNITUDE);
        sp_recipe_free(r);
    }
    sp_recipe *r = parse_ok(MOD("{\"type\": \"ConstantPruningModifier\", \"params\": \"__ALL__\", "
                                "\"start_epoch\": -1, \"end_epoch\": -1},"
                                "{\"type\": \"constant\"},"
                                "{\"type\": \"DistillationModifier\", \"hardness\": 0.7, "
                                "\"temperature\": 3, \"teacher\": \"dense.pt\"},"
                                "{\"type\": \"distillation\"}"));
    ck_assert_uint_eq(r->nmods, 4);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_CONSTANT);
    ck_assert_double_eq(r->mods[0].start_epoch, 0);
    ck_assert_double_eq(r->mods[0].end_epoch, -1);
    ck_assert_int_eq(r->mods[2].type, SP_MOD_DISTILLATION);
    ck_assert_double_eq(r->mods[2].hardness, 0.7);
    ck_assert_double_eq(r->mods[2].temperature, 3);
    ck_assert_str_eq(r->mods[2].teacher, "dense.pt");
    ck_assert_double_eq(r->mods[3].hardness, 0.5);
    ck_assert_double_eq(r->mods[3].temperature, 2.0);
    ck_assert_ptr_null(r->mods[3].teacher);
    sp_recipe_free(r);
    /* SparseML's one-key form and a missing version */
    r = parse_ok("{\"modifiers\": [{\"GMPruningModifier\": {\"final_sparsity\": 0.5}}]}");
    ck_assert_int_eq(r->version, 1);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_GMP);
    sp_recipe_free(r);
}
END_TEST

START_TEST(test_parse_fields)
{
    sp_recipe *r = parse_ok(MOD(
        "{\"type\": \"GMPruningModifier\", \"params\": [\"re:.*attention.*weight\", \"fc.weight\"],"
        " \"ignore\": \"re:.*key.*\", \"init_sparsity\": 0.05, \"final_sparsity\": 0.85,"
        " \"start_epoch\": 1, \"end_epoch\": 11, \"update_frequency\": 0.5,"
        " \"inter_func\": \"inverse_cubic\", \"mask_type\": [4, 1], \"leave_enabled\": false,"
        " \"global_sparsity\": false, \"block_score\": \"l2\", \"log_types\": \"__ALL__\"}"));
    const sp_modifier *m = &r->mods[0];
    ck_assert_uint_eq(m->params.n, 2);
    ck_assert_str_eq(m->params.text[0], "re:.*attention.*weight");
    ck_assert_str_eq(m->params.text[1], "fc.weight");
    ck_assert_uint_eq(m->ignore.n, 1);
    ck_assert_double_eq(m->init_sparsity, 0.05);
    ck_assert_double_eq(m->final_sparsity, 0.85);
    ck_assert_double_eq(m->start_epoch, 1);
    ck_assert_double_eq(m->end_epoch, 11);
    ck_assert_double_eq(m->update_frequency, 0.5);
    ck_assert_int_eq(m->inter_func, SP_INTER_INVERSE_CUBIC);
    ck_assert_int_eq(m->mask_type.kind, SP_PATTERN_BLOCK);
    ck_assert_int_eq(m->mask_type.r, 4);
    ck_assert_int_eq(m->mask_type.c, 1);
    ck_assert(!m->leave_enabled);
    ck_assert(!m->global_sparsity);
    ck_assert_int_eq(m->block_score, SP_BLOCK_SCORE_L2);
    sp_recipe_free(r);
    /* defaults */
    r = parse_ok(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.9, \"end_epoch\": 5}"));
    m = &r->mods[0];
    ck_assert_uint_eq(m->params.n, 0);
    ck_assert_double_eq(m->init_sparsity, 0);
    ck_assert_double_eq(m->start_epoch, 0);
    ck_assert_double_eq(m->update_frequency, 1);
    ck_assert_int_eq(m->inter_func, SP_INTER_CUBIC);
    ck_assert_int_eq(m->mask_type.kind, SP_PATTERN_UNSTRUCTURED);
    ck_assert_int_eq(m->block_score, SP_BLOCK_SCORE_L1);
    ck_assert(m->leave_enabled);
    sp_recipe_free(r);
    /* mask_type spellings */
    const char *mt[][2] = {{"\"block4\"", "1x4"}, {"\"block\"", "1x4"}, {"\"tensorrt\"", "2:4"},
                           {"\"2:4\"", "2:4"},    {"\"8x8\"", "8x8"},   {"\"unstructured\"", "unstructured"},
                           {"[16, 16]", "16x16"}, {"\"1:4\"", "1:4"}};
    for (size_t i = 0; i < sizeof mt / sizeof mt[0]; i++) {
        char buf[256], pb[32];
        snprintf(buf, sizeof buf, MOD("{\"type\": \"magnitude\", \"mask_type\": %s%s}"), mt[i][0],
                 strchr(mt[i][1], ':') ? "" : ", \"final_sparsity\": 0.5");
        r = parse_ok(buf);
        ck_assert_str_eq(sp_pattern_str(&r->mods[0].mask_type, pb, sizeof pb), mt[i][1]);
        sp_recipe_free(r);
    }
    /* N:M implies the sparsity */
    r = parse_ok(MOD("{\"type\": \"magnitude\", \"mask_type\": \"1:4\"}"));
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.75);
    sp_recipe_free(r);
    r = parse_ok(MOD("{\"type\": \"magnitude\", \"mask_type\": \"2:4\", \"final_sparsity\": 0.5}"));
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.5);
    sp_recipe_free(r);
    /* per-layer map */
    r = parse_ok(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": {\"0.9\": "
                     "[\"re:.*fc.*\", \"head.weight\"], \"0.5\": \"re:.*attn.*\"}, \"end_epoch\": 2}"));
    m = &r->mods[0];
    ck_assert_uint_eq(m->noverrides, 2);
    ck_assert_double_eq(m->overrides[0].sparsity, 0.9);
    ck_assert_uint_eq(m->overrides[0].params.n, 2);
    ck_assert_double_eq(m->overrides[1].sparsity, 0.5);
    ck_assert_uint_eq(m->params.n, 3); /* the union */
    ck_assert_double_eq(m->final_sparsity, 0.9);
    sp_recipe_free(r);
    /* sparsity 0 and 1 are allowed */
    r = parse_ok(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 1},"
                     "{\"type\": \"magnitude\", \"final_sparsity\": 0}"));
    sp_recipe_free(r);
}
END_TEST

START_TEST(test_parse_errors)
{
    parse_err(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5},"
                  "{\"type\": \"GMPruningModifier\", \"final_sparsity\": 1.5}"),
              "modifiers[1].final_sparsity: 1.5 is out of range [0, 1]");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": -0.1}"),
              "modifiers[0].final_sparsity: -0.1 is out of range [0, 1]");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": \"0.9\"}"),
              "modifiers[0].final_sparsity: expected a number or a map, got a string");
    parse_err(MOD("{\"type\": \"magnitude\"}"),
              "modifiers[0].final_sparsity: missing (required for MagnitudePruningModifier)");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"init_sparsity\": 2}"),
              "modifiers[0].init_sparsity: 2 is out of range [0, 1]");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"finl_sparsity\": 2}"),
              "modifiers[0].finl_sparsity: unknown field (did you mean 'final_sparsity'?)");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"colour\": 2}"),
              "modifiers[0].colour: unknown field");
    parse_err(MOD("{\"type\": \"constant\", \"final_sparsity\": 0.5}"),
              "modifiers[0].final_sparsity: not a field of ConstantPruningModifier");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"hardness\": 0.5}"),
              "modifiers[0].hardness: not a field of MagnitudePruningModifier");
    parse_err(MOD("{\"type\": \"GMPruningModifer\", \"final_sparsity\": 0.5}"),
              "modifiers[0]: unknown modifier type 'GMPruningModifer' (did you mean "
              "'GMPruningModifier'?)");
    parse_err(MOD("{\"type\": \"FrobnicateModifier\"}"),
              "modifiers[0]: unknown modifier type 'FrobnicateModifier' (see docs/recipes.md for "
              "the ones sparsify reads)");
    parse_err(MOD("{\"final_sparsity\": 0.5}"),
              "modifiers[0]: type: missing (a modifier is a tagged map such as "
              "'!GMPruningModifier', a map with \"type\", or {ClassName: {fields}})");
    parse_err(MOD("{\"type\": 3}"), "modifiers[0].type: expected a string, got a number");
    parse_err(MOD("3"), "modifiers[0]: expected a modifier (a tagged map such as "
                        "'!GMPruningModifier', a map with \"type\", or {ClassName: {fields}}), got "
                        "a number");
    parse_err(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5, \"start_epoch\": 4, "
                  "\"end_epoch\": 2}"),
              "modifiers[0].end_epoch: 2 is before start_epoch 4");
    parse_err(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5, \"start_epoch\": -2}"),
              "modifiers[0].start_epoch: -2 is negative");
    parse_err(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5, \"end_epoch\": 4, "
                  "\"update_frequency\": 0}"),
              "modifiers[0].update_frequency: 0 must be > 0 for a gradual schedule");
    parse_err(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5, \"inter_func\": \"exp\"}"),
              "modifiers[0].inter_func: 'exp' is not one of cubic, linear, inverse_cubic");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"mask_type\": \"3x\"}"),
              "modifiers[0].mask_type: pattern '3x' is not one of unstructured, RxC (e.g. 4x1), "
              "N:M (e.g. 2:4), block4, tensorrt");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"mask_type\": [4]}"),
              "modifiers[0].mask_type: a block must be [rows, cols] of two positive integers");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.9, \"mask_type\": \"2:4\"}"),
              "modifiers[0].final_sparsity: 0.9 does not match mask_type 2:4 (which implies 0.5)");
    parse_err(MOD("{\"type\": \"global_magnitude\", \"mask_type\": \"2:4\"}"),
              "modifiers[0].global_sparsity: N:M patterns (2:4) cannot use a global threshold");
    parse_err(MOD("{\"type\": \"global_magnitude\", \"final_sparsity\": 0.5, \"global_sparsity\": false}"),
              "modifiers[0].global_sparsity: must be true for GlobalMagnitudePruningModifier");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"leave_enabled\": 1}"),
              "modifiers[0].leave_enabled: expected true or false, got a number");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"block_score\": \"l3\"}"),
              "modifiers[0].block_score: 'l3' is not one of l1, l2");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": 7}"),
              "modifiers[0].params: expected a string or a list of strings, got a number");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": []}"),
              "modifiers[0].params: empty list (it selects nothing)");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": [\"a\", 2]}"),
              "modifiers[0].params: entry 1: expected a non-empty string, got a number");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": \"re:fc[\"}"),
              "modifiers[0].params: regex 'fc[': missing terminating ] for character class");
    /* a hostile pattern fails at parse time, fast */
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"ignore\": "
                  "\"re:a++++++++++++++++++++++++\"}"),
              "modifiers[0].ignore: regex 'a++++++++++++++++++++++++': quantifier does not "
              "follow a repeatable item");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": {\"0.5\": \"re:\\\\q\"}}"),
              "modifiers[0].final_sparsity: regex '\\q': bad escape \\q at position 0");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": {\"x\": \"a\"}}"),
              "modifiers[0].final_sparsity: key 'x' is not a number");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": {\"1.2\": \"a\"}}"),
              "modifiers[0].final_sparsity: 1.2 is out of range [0, 1]");
    parse_err(MOD("{\"type\": \"magnitude\", \"params\": \"a\", \"final_sparsity\": {\"0.5\": \"a\"}}"),
              "modifiers[0].params: cannot be combined with a map-valued final_sparsity (the map "
              "lists the params)");
    parse_err(MOD("{\"type\": \"global_magnitude\", \"final_sparsity\": {\"0.5\": \"a\"}}"),
              "modifiers[0].final_sparsity: a per-layer map cannot be used with a global threshold");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"final_sparsity\": 0.6}"),
              "modifiers[0].final_sparsity: given twice (first at line 1, column 52)");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"sparsity\": 0.6}"),
              "modifiers[0].sparsity: given twice (as 'final_sparsity' and 'sparsity')");
    parse_err(MOD("{\"type\": \"distillation\", \"hardness\": 1.5}"),
              "modifiers[0].hardness: 1.5 is out of range [0, 1]");
    parse_err(MOD("{\"type\": \"distillation\", \"temperature\": 0}"),
              "modifiers[0].temperature: 0 must be > 0");
    parse_err(MOD("{\"type\": \"distillation\", \"teacher\": 1}"),
              "modifiers[0].teacher: expected a string, got a number");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"end_epoch\": -1}"),
              "modifiers[0].end_epoch: -1 is before start_epoch 0");
    /* recipe level */
    parse_err("{\"version\": 2, \"modifiers\": [{\"type\": \"constant\"}]}",
              "version: 2 is not supported (expected 1, or a SparseML/llm-compressor 1.x version)");
    parse_err("{\"version\": \"2.0.1\", \"modifiers\": [{\"type\": \"constant\"}]}",
              "version: 2.0.1 is not supported (expected 1, or a SparseML/llm-compressor 1.x "
              "version)");
    parse_err("{\"version\": [1], \"modifiers\": [{\"type\": \"constant\"}]}",
              "version: expected a number or a string, got a list");
    parse_err("{\"version\": 1}",
              "no modifiers: a recipe needs a key with 'modifiers' in its name (modifiers, "
              "pruning_modifiers, ...) or a stage holding one");
    parse_err("{\"modifiers\": 3}",
              "modifiers: expected a list of modifiers (or a map of class name to fields), got a "
              "number");
    parse_err("{\"modifiers\": []}", "no modifiers: every group is empty");
    parse_err("{\"modifers\": [{\"type\": \"constant\"}], \"modifiers\": []}",
              "modifers: looks like a list of modifiers, but only keys with 'modifiers' in their "
              "name hold modifiers (it is read as a variable)");
    parse_err("[1]", "a recipe is a map of variables and modifier groups (such as "
                     "pruning_modifiers), got a list");
    parse_err("{\"modifiers\": [\n  {\"type\": }]}", "modifiers[0].type: expected a string, got null");
    parse_err("{\"modifiers\": [{\"type\": \"constant\"}]} x",
              "invalid JSON: text after the recipe");
    parse_err("{\"modifiers\": [{\"type\": \"constant\"}}", "invalid JSON");
}
END_TEST

static char *src_tests_dir(char *buf, size_t len)
{
    const char *env = getenv("SPARSIFY_SRC");
    if (env && *env) {
        snprintf(buf, len, "%s/tests", env);
        return buf;
    }
    const char *f = __FILE__;
    char exe[4096];
    if (f[0] == '/') {
        snprintf(buf, len, "%s", f);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        ck_assert(n > 0);
        exe[n] = 0;
        for (int k = 0; k < 2; k++)
            *strrchr(exe, '/') = 0;
        ck_assert(strlen(exe) + strlen(f) + 2 < len);
        strcpy(buf, exe);
        strcat(buf, "/");
        strcat(buf, f);
    }
    *strrchr(buf, '/') = 0;
    return buf;
}

START_TEST(test_recipe_load)
{
    sp_recipe *r;
    sp_error err = {0};
    ck_assert_int_eq(sp_recipe_load(&r, "unstructured-90", &err), SP_OK);
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.9);
    sp_recipe_free(r);
    ck_assert_int_eq(sp_recipe_load(&r, "nm-2-4", &err), SP_OK);
    ck_assert_int_eq(r->mods[0].mask_type.kind, SP_PATTERN_NM);
    sp_recipe_free(r);
    ck_assert_int_eq(sp_recipe_load(&r, "no-such-recipe", &err), SP_ERR_NOT_FOUND);
    ck_assert_str_eq(err.msg, "no recipe file or bundled recipe named 'no-such-recipe' (see "
                              "'sparsify recipe list')");
    ck_assert_int_eq(sp_recipe_load(&r, "/nonexistent/r.json", &err), SP_ERR_NOT_FOUND);
    ck_assert_str_eq(err.msg, "cannot open '/nonexistent/r.json': No such file or directory");
    char path[] = "/tmp/sp_recipe_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *bad = "{\"modifiers\": [{\"type\": \"magnitude\", \"final_sparsity\": 1.5}]}";
    ck_assert_int_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    close(fd);
    ck_assert_int_eq(sp_recipe_load(&r, path, &err), SP_ERR_INVALID_ARG);
    char want[256];
    snprintf(want, sizeof want, "'%s': line 1: modifiers[0].final_sparsity: 1.5 is out of range [0, 1]",
             path);
    ck_assert_str_eq(err.msg, want);
    ck_assert_ptr_null(r);
    FILE *f = fopen(path, "w");
    fputs("{\"modifiers\": [{\"type\": \"magnitude\", \"final_sparsity\": 0.25}]}", f);
    fclose(f);
    ck_assert_int_eq(sp_recipe_load(&r, path, &err), SP_OK);
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.25);
    sp_recipe_free(r);
    unlink(path);
}
END_TEST

START_TEST(test_recipe_free)
{
    sp_recipe_free(NULL);
    sp_recipe *r = parse_ok(MOD("{\"type\": \"magnitude\", \"final_sparsity\": {\"0.5\": [\"a\", \"b\"]},"
                                " \"ignore\": [\"c\"]}, {\"type\": \"distillation\", \"teacher\": \"t\"}"));
    sp_recipe_free(r); /* valgrind/asan would flag leaks */
}
END_TEST

START_TEST(test_bundled)
{
    size_t n = sp_recipe_bundled_count();
    ck_assert_uint_ge(n, 10);
    const char *need[] = {"unstructured-50", "unstructured-80", "unstructured-90", "unstructured-95",
                          "global-90", "block4x1-90", "block16x16-80", "2:4", "gradual-90",
                          "movement-90"};
    for (size_t j = 0; j < sizeof need / sizeof need[0]; j++) {
        size_t i = 0;
        while (i < n && strcmp(sp_recipe_bundled_name(i), need[j]))
            i++;
        ck_assert_msg(i < n, "bundled recipe %s missing", need[j]);
    }
    char dir[4096];
    src_tests_dir(dir, sizeof dir);
    for (size_t i = 0; i < n; i++) {
        const char *text = sp_recipe_bundled_text(i);
        ck_assert_ptr_nonnull(text);
        ck_assert(strlen(sp_recipe_bundled_summary(i)) > 10);
        sp_recipe *r = parse_ok(text);
        sp_recipe_free(r);
        sp_recipe *r2;
        sp_error err = {0};
        ck_assert_int_eq(sp_recipe_load(&r2, sp_recipe_bundled_name(i), &err), SP_OK);
        sp_recipe_free(r2);
    }
    /* the compiled-in text is byte-identical to recipes/templates/ */
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "ls %s/../recipes/templates/*.json | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int nfiles = 0;
    ck_assert_int_eq(fscanf(p, "%d", &nfiles), 1);
    pclose(p);
    ck_assert_int_eq(nfiles, (int)n);
    const char *stems[][2] = {{"2:4", "nm-2-4"}, {"gradual-90", "gradual-90"}, {"global-90", "global-90"}};
    for (size_t j = 0; j < 3; j++) {
        size_t i = 0;
        while (strcmp(sp_recipe_bundled_name(i), stems[j][0]))
            i++;
        char path[4400];
        snprintf(path, sizeof path, "%s/../recipes/templates/%s.json", dir, stems[j][1]);
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        char buf[8192];
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        buf[len] = 0;
        fclose(f);
        ck_assert_str_eq(sp_recipe_bundled_text(i), buf);
    }
    ck_assert_ptr_null(sp_recipe_bundled_name(n));
    ck_assert_ptr_null(sp_recipe_bundled_text(n));
    /* gradual-90 is GMP cubic 0 -> 0.9 over 0..8 */
    sp_recipe *r;
    sp_error err = {0};
    ck_assert_int_eq(sp_recipe_load(&r, "gradual-90", &err), SP_OK);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_GMP);
    ck_assert_double_eq(r->mods[0].end_epoch, 8);
    ck_assert_double_eq(sp_modifier_sparsity_at(&r->mods[0], "fc.weight", 8), 0.9);
    sp_recipe_free(r);
}
END_TEST

START_TEST(test_modifier_targets)
{
    sp_recipe *r = parse_ok(MOD(
        "{\"type\": \"magnitude\", \"final_sparsity\": 0.5},"
        "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": [\"re:encoder\\\\.layer\\\\.\\\\d+\\\\.attention.*weight\", \"fc.weight\"], \"ignore\": [\"re:.*key.*\"]},"
        "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": \"__ALL_PRUNABLE__\", \"ignore\": \"head.weight\"},"
        "{\"type\": \"constant\", \"params\": \"__ALL__\"}"));
    const sp_modifier *m = r->mods;
    ck_assert(sp_modifier_targets(&m[0], "fc.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[0], "fc.bias", SP_F32, 1));
    ck_assert(!sp_modifier_targets(&m[0], "bert.embeddings.word_embeddings.weight", SP_F32, 2));
    ck_assert(sp_modifier_targets(&m[1], "encoder.layer.3.attention.query.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[1], "encoder.layer.3.attention.key.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[1], "bert.encoder.layer.3.attention.query.weight", SP_F32, 2));
    ck_assert(sp_modifier_targets(&m[1], "fc.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[1], "fc.weight2", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[1], "fc.weight", SP_I64, 2));
    ck_assert(sp_modifier_targets(&m[2], "fc.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[2], "head.weight", SP_F32, 2));
    ck_assert(sp_modifier_targets(&m[3], "fc.bias", SP_F32, 1));
    sp_recipe_free(r);
    /* modifiers that neither prune nor hold masks target nothing */
    r = parse_ok("t_modifiers:\n  - !EpochRangeModifier {end_epoch: 2}\n"
                 "  - !SetLearningRateModifier {learning_rate: 0.1}\n"
                 "  - !DistillationModifier {}\n  - !QuantizationModifier {}\n");
    for (size_t i = 0; i < r->nmods; i++)
        ck_assert(!sp_modifier_targets(&r->mods[i], "fc.weight", SP_F32, 2));
    sp_recipe_free(r);

    /* Python syntax: [\d] and [^\d] are digit sets (a hand translation to
     * POSIX got them wrong), lookaheads work, match is anchored at the start */
    r = parse_ok(MOD(
        "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"ignore\": [\"re:layers\\\\.[\\\\d]\\\\.\"]},"
        "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": [\"re:layers\\\\.[^\\\\d]\"]},"
        "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": [\"re:^((?!dfl).)*$\"]}"));
    m = r->mods;
    ck_assert(!sp_modifier_targets(&m[0], "layers.3.mlp.weight", SP_F32, 2));
    ck_assert(sp_modifier_targets(&m[0], "layers.13.mlp.weight", SP_F32, 2));
    ck_assert(sp_modifier_targets(&m[1], "layers.x.mlp.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[1], "layers.3.mlp.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[1], "model.layers.x.mlp.weight", SP_F32, 2)); /* re.match */
    ck_assert(sp_modifier_targets(&m[2], "model.22.cv2.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(&m[2], "model.22.dfl.conv.weight", SP_F32, 2));
    /* compiled once, at parse time */
    ck_assert_ptr_nonnull(m[0].ignore.re[0]);
    ck_assert_ptr_nonnull(m[1].params.re[0]);
    sp_recipe_free(r);

    /* a pattern that backtracks without end: an error from sp_modifier_select */
    r = parse_ok(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"params\": "
                     "[\"fc.weight\", \"re:(\\\\w+\\\\.?)+$\"]}"));
    bool t = true;
    sp_error err = {0};
    ck_assert_int_eq(sp_modifier_select(&r->mods[0], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-",
                                        SP_F32, 2, &t, &err),
                     SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "backtracks too much"));
    ck_assert(!sp_modifier_targets(&r->mods[0], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-", SP_F32, 2));
    ck_assert_int_eq(sp_modifier_select(&r->mods[0], "fc.weight", SP_F32, 2, &t, &err), SP_OK);
    ck_assert(t);
    sp_recipe_free(r);
}
END_TEST

START_TEST(test_modifier_final_for)
{
    sp_recipe *r = parse_ok(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": {\"0.9\": "
                                "[\"re:.*fc.*\", \"head.weight\"], \"0.5\": \"re:.*attn.*\"}, "
                                "\"end_epoch\": 4}"));
    const sp_modifier *m = r->mods;
    ck_assert_double_eq(sp_modifier_final_for(m, "a.fc1.weight"), 0.9);
    ck_assert_double_eq(sp_modifier_final_for(m, "head.weight"), 0.9);
    ck_assert_double_eq(sp_modifier_final_for(m, "h.attn.weight"), 0.5);
    ck_assert(sp_modifier_targets(m, "h.attn.weight", SP_F32, 2));
    ck_assert(!sp_modifier_targets(m, "h.mlp.weight", SP_F32, 2));
    sp_recipe_free(r);
    r = parse_ok(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.7}"));
    ck_assert_double_eq(sp_modifier_final_for(r->mods, "x.weight"), 0.7);
    sp_recipe_free(r);
}
END_TEST

START_TEST(test_modifier_sparsity_at)
{
    sp_recipe *r = parse_ok(MOD("{\"type\": \"GMPruningModifier\", \"init_sparsity\": 0.1, "
                                "\"final_sparsity\": {\"0.9\": \"re:.*fc.*\", \"0.5\": \"re:.*attn.*\"}, "
                                "\"start_epoch\": 2, \"end_epoch\": 6, \"update_frequency\": 1, "
                                "\"inter_func\": \"linear\"},"
                                "{\"type\": \"magnitude\", \"final_sparsity\": 0.8, \"start_epoch\": 3},"
                                "{\"type\": \"constant\"}"));
    const sp_modifier *m = r->mods;
    ck_assert_double_eq(sp_modifier_sparsity_at(&m[0], "fc.weight", 0), 0.1);
    ck_assert_double_eq_tol(sp_modifier_sparsity_at(&m[0], "fc.weight", 4.5), 0.5, 1e-12);
    ck_assert_double_eq_tol(sp_modifier_sparsity_at(&m[0], "attn.weight", 4), 0.3, 1e-12);
    ck_assert_double_eq(sp_modifier_sparsity_at(&m[0], "fc.weight", 6), 0.9);
    ck_assert_double_eq(sp_modifier_sparsity_at(&m[1], "x.weight", 2), 0.8); /* init = final */
    ck_assert_double_eq(sp_modifier_sparsity_at(&m[1], "x.weight", 3), 0.8);
    ck_assert_double_eq(sp_modifier_sparsity_at(&m[2], "x.weight", 3), 0.0);
    sp_recipe_free(r);
}
END_TEST

START_TEST(test_modifier_prunes_type_str)
{
    sp_modifier m = {0};
    const sp_modifier_type ts[] = {SP_MOD_MAGNITUDE, SP_MOD_GMP, SP_MOD_GLOBAL_MAGNITUDE,
                                   SP_MOD_MOVEMENT, SP_MOD_CONSTANT, SP_MOD_DISTILLATION};
    const char *names[] = {"MagnitudePruningModifier", "GMPruningModifier",
                           "GlobalMagnitudePruningModifier", "MovementPruningModifier",
                           "ConstantPruningModifier", "DistillationModifier"};
    for (int i = 0; i < 6; i++) {
        m.type = ts[i];
        ck_assert_int_eq(sp_modifier_prunes(&m), i < 4);
        ck_assert_str_eq(sp_modifier_type_str(ts[i]), names[i]);
    }
}
END_TEST

/* ---- the eval() evaluator, against Python's answers */

static const rnode *table_vars(void *ctx, const char *name)
{
    (void)ctx;
    static rnode ninety = {.kind = RK_NUM, .num = 90, .is_int = true};
    static rnode lr = {.kind = RK_NUM, .num = 0.0028, .is_int = false};
    static rnode yes = {.kind = RK_BOOL, .b = true};
    static rnode list = {.kind = RK_SEQ};
    if (!strcmp(name, "num_epochs"))
        return &ninety;
    if (!strcmp(name, "init_lr"))
        return &lr;
    if (!strcmp(name, "flag"))
        return &yes;
    if (!strcmp(name, "mask"))
        return &list;
    return NULL;
}

START_TEST(test_expr_table)
{
    /* expression, is_int, value: what Python 3 prints for eval(expression) */
    static const struct {
        const char *e;
        bool is_int;
        double v;
    } ok[] = {
        {"1 + 2 * 3", true, 7},          {"(1 + 2) * 3", true, 9},
        {"7 / 2", false, 3.5},           {"6 / 2", false, 3.0},
        {"7 // 2", true, 3},             {"-7 // 2", true, -4},
        {"7 % 3", true, 1},              {"-7 % 3", true, 2},
        {"7 % -3", true, -2},            {"7.5 // 2", false, 3.0},
        {"-7.5 // 2", false, -4.0},      {"7.5 % 2", false, 1.5},
        {"-7.5 % 2", false, 0.5},        {"5 % 2.5", false, 0.0},
        {"2 ** 10", true, 1024},         {"2 ** -1", false, 0.5},
        {"-2 ** 2", true, -4},           {"2 ** 3 ** 2", true, 512},
        {"4 ** 0.5", false, 2.0},        {"(-2) ** 3", true, -8},
        {"min(3, 1, 2)", true, 1},       {"max(1, 2.5)", false, 2.5},
        {"int(2.9)", true, 2},           {"int(-2.9)", true, -2},
        {"float(3)", false, 3.0},        {"abs(-4)", true, 4},
        {"abs(-4.5)", false, 4.5},       {"round(2.5)", true, 2},
        {"round(3.5)", true, 4},         {"round(-0.5)", true, 0},
        {"round(2.675, 2)", false, 2.67}, {"round(1234.5, -1)", false, 1230.0},
        {"round(1250, -2)", true, 1200}, {"1e-3 * 1000", false, 1.0},
        {"1_000 + 1", true, 1001},       {"0x10 + 0o10 + 0b10", true, 26},
        {".5 + 5.", false, 5.5},         {"num_epochs * 0.1", false, 9.0},
        {"num_epochs - 2", true, 88},    {"0.01 * init_lr", false, 0.01 * 0.0028},
        {"flag + 1", true, 2},           {"  1 +\t2  ", true, 3},
        {"-(-3)", true, 3},              {"+3", true, 3},
        {"num_epochs // 7 * 7 + num_epochs % 7", true, 90},
        {"max(0, min(1, 1.5))", true, 1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        expr_value v;
        char msg[256];
        expr_status st = expr_eval(ok[i].e, table_vars, NULL, &v, msg, sizeof msg);
        ck_assert_msg(st == EXPR_OK, "%s: %s", ok[i].e, msg);
        ck_assert_msg(v.is_int == ok[i].is_int, "%s: int %d, want %d", ok[i].e, v.is_int,
                      ok[i].is_int);
        ck_assert_msg(expr_to_double(&v) == ok[i].v, "%s = %.17g, want %.17g", ok[i].e,
                      expr_to_double(&v), ok[i].v);
    }
    static const struct {
        const char *e;
        expr_status st;
        const char *msg;
    } bad[] = {
        {"1 / 0", EXPR_ERROR, "division by zero"},
        {"1.5 / 0.0", EXPR_ERROR, "division by zero"},
        {"5 // 0", EXPR_ERROR, "division by zero"},
        {"5 % 0", EXPR_ERROR, "modulo by zero"},
        {"0 ** -1", EXPR_ERROR, "0 cannot be raised to a negative power"},
        {"x + 1", EXPR_UNKNOWN, "x"},
        {"pow(2, 3)", EXPR_ERROR,
         "calling 'pow' is not allowed (the functions are min, max, int, float, abs, round)"},
        {"__import__('os')", EXPR_ERROR,
         "calling '__import__' is not allowed (the functions are min, max, int, float, abs, "
         "round)"},
        {"os.system", EXPR_ERROR, "attributes ('os.') are not allowed"},
        {"'a' * 3", EXPR_ERROR, "strings are not allowed (character 1)"},
        {"1 < 2", EXPR_ERROR, "'<' is not allowed: expressions are arithmetic only"},
        {"(1 + 2", EXPR_ERROR, "a '(' is not closed"},
        {"1 + 2)", EXPR_ERROR, "unmatched ')' at character 6"},
        {"", EXPR_ERROR, "empty expression"},
        {"1 +", EXPR_ERROR, "the expression ends too early"},
        {"[1]", EXPR_ERROR, "unexpected '[' at character 1"},
        {"2 ** 100", EXPR_ERROR, "integer overflow"},
        {"9223372036854775807 + 1", EXPR_ERROR, "integer overflow"},
        {"1e308 * 10", EXPR_ERROR, "the result is too large"},
        {"(-8) ** (1 / 3)", EXPR_ERROR,
         "a negative number to a fractional power is not a real number"},
        {"min(1)", EXPR_ERROR, "min() takes two or more numbers"},
        {"int(1, 2)", EXPR_ERROR, "int() takes one number"},
        {"round(1.5, 1.5)", EXPR_ERROR, "round(): the number of digits must be an integer"},
        {"max(a=1, b=2)", EXPR_ERROR, "keyword arguments are not allowed (max())"},
        {"007", EXPR_ERROR, "leading zeros in an integer are not allowed (character 1)"},
        {"1.2.3", EXPR_ERROR, "invalid number at character 1"},
        {"mask * 2", EXPR_ERROR, "variable 'mask' is a list, not a number"},
        {"~1", EXPR_ERROR, "'~' is not allowed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expr_value v;
        char msg[256];
        expr_status st = expr_eval(bad[i].e, table_vars, NULL, &v, msg, sizeof msg);
        ck_assert_msg(st == bad[i].st, "%s: status %d, want %d (%s)", bad[i].e, st, bad[i].st, msg);
        ck_assert_msg(!strcmp(msg, bad[i].msg), "%s:\n got: %s\nwant: %s", bad[i].e, msg,
                      bad[i].msg);
    }
    /* deep nesting fails cleanly */
    char deep[600];
    memset(deep, '(', 300);
    strcpy(deep + 300, "1");
    memset(deep + 301, ')', 290);
    deep[591] = '\0';
    expr_value v;
    char msg[256];
    ck_assert_int_eq(expr_eval(deep, table_vars, NULL, &v, msg, sizeof msg), EXPR_ERROR);
    ck_assert_str_eq(msg, "nested more than 100 levels deep");
    const char *in;
    size_t inlen;
    ck_assert(expr_is_eval(" eval(1 + 2) ", &in, &inlen) && inlen == 5 && !strncmp(in, "1 + 2", 5));
    ck_assert(!expr_is_eval("evaluate(1)", &in, &inlen));
    ck_assert(!expr_is_eval("eval(", &in, &inlen));
}
END_TEST

/* ---- YAML, Markdown front matter, variables */

START_TEST(test_yaml)
{
    const char *y =
        "# variables\n"
        "num_epochs: &num_epochs 10\n"
        "final: &final 0.8\n"
        "base: &base {start_epoch: 1, update_frequency: 0.5}\n"
        "pruning_modifiers:\n"
        "  - !GMPruningModifier\n"
        "    <<: *base\n"
        "    end_epoch: *num_epochs\n"
        "    final_sparsity: *final\n"
        "    params: ['re:.*fc\\d\\.weight']\n"
        "  - !ConstantPruningModifier\n"
        "    params: __all_prunable__\n"
        "    start_epoch: 0\n"
        "training_modifiers:\n"
        "  - !EpochRangeModifier\n"
        "    start_epoch: 0\n"
        "    end_epoch: *num_epochs\n";
    sp_status st;
    sp_recipe *r;
    sp_recipe_problems p = problems_of(y, false, &st, &r);
    ck_assert_msg(st == SP_OK, "%s", p.n ? p.v[0].message : "?");
    ck_assert_uint_eq(p.n, 0);
    ck_assert_str_eq(r->format, "yaml");
    ck_assert_uint_eq(r->nmods, 3);
    const sp_modifier *m = &r->mods[0];
    ck_assert_int_eq(m->type, SP_MOD_GMP);
    ck_assert_double_eq(m->start_epoch, 1);
    ck_assert_double_eq(m->update_frequency, 0.5);
    ck_assert_double_eq(m->end_epoch, 10);
    ck_assert_double_eq(m->final_sparsity, 0.8);
    ck_assert_str_eq(m->params.text[0], "re:.*fc\\d\\.weight");
    ck_assert_str_eq(m->where, "pruning_modifiers[0]");
    ck_assert_int_eq(m->line, 6);
    ck_assert_str_eq(r->mods[1].params.text[0], "__ALL_PRUNABLE__");
    ck_assert_int_eq(r->mods[2].type, SP_MOD_EPOCH_RANGE);
    double e;
    ck_assert(sp_recipe_epochs(r, &e) && e == 10);
    sp_recipe_free(r);
    sp_recipe_problems_release(&p);

    /* Markdown card: HTML comment, front matter, body; lines count from the file */
    const char *md = "<!--\nlicence\n-->\n\n---\n"
                     "sparsity: 0.9\n"
                     "modifiers:\n"
                     "  - !MagnitudePruningModifier\n"
                     "    final_sparsity: eval(sparsity + 0.5)\n"
                     "---\n\n# A recipe card\n\n```yaml\nnot: [parsed\n```\n";
    p = problems_of(md, false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert_uint_eq(p.errors, 1);
    ck_assert_int_eq(p.v[0].line, 9);
    ck_assert_str_eq(p.v[0].path, "modifiers[0].final_sparsity");
    ck_assert_str_eq(p.v[0].message, "1.4 is out of range [0, 1]");
    sp_recipe_problems_release(&p);

    /* edge cases: each a problem with its line */
    static const struct {
        const char *text;
        int line;
        const char *path, *msg;
    } cases[] = {
        {"modifiers:\n  - !GMPruningModifier\n\tfinal_sparsity: 0.5\n", 3, "",
         "a tab character: YAML indents with spaces only"},
        {"modifiers:\n  - !MagnitudePruningModifier\n    final_sparsity: 0.5\n"
         "    final_sparsity: 0.7\n",
         4, "modifiers[0].final_sparsity", "given twice (first at line 3, column 5)"},
        {"a: 1\na: 2\nmodifiers: []\n", 2, "a", "given twice (first at line 1, column 1)"},
        /* found by fuzz_recipe_yaml: an alias to the anchor of a value left out
         * as a duplicate read freed memory */
        {"a: &x {p: 1}\na: &x {q: 2}\nm_modifiers:\n  - !ConstantPruningModifier\n    <<: *x\n",
         2, "a", "given twice (first at line 1, column 1)"},
        {"modifiers: [\n", 2, "",
         "invalid YAML: did not find expected node content while parsing a flow node (line 2)"},
        {"modifiers:\n  - *nope\n", 2, "", "alias '*nope' names no anchor defined before it"},
        {"a: 1\n---\nmodifiers: []\n", 2, "",
         "a second YAML document: a recipe is one document (a Markdown recipe card has its YAML "
         "between the first two '---' lines)"},
        {"modifiers:\n  - !!int x\n", 2, "", "'x' is not a valid !!int"},
        {"modifiers:\n  - !MagnitudePruningModifier\n    final_sparsity: '0.5'\n", 3,
         "modifiers[0].final_sparsity", "expected a number or a map, got a string"},
        {"modifiers:\n  - !MagnitudePruningModifier\n    final_sparsity: !!str 0.5\n", 3,
         "modifiers[0].final_sparsity", "expected a number or a map, got a string"},
        {"modifiers:\n  - !MagnitudePruningModifier\n    final_sparsity: 0.5\n    leave_enabled: "
         "maybe\n",
         4, "modifiers[0].leave_enabled", "expected true or false, got a string"},
        {"x: eval(y * 2)\ny: eval(x)\nmodifiers:\n  - !MagnitudePruningModifier\n"
         "    final_sparsity: eval(x)\n",
         2, "y", "eval(x): variable 'x' cannot be evaluated (it depends on itself?)"},
        {"v0: eval(v1 + 1)\nv1: eval(v2 + 1)\nv2: eval(v0 + 1)\nm_modifiers: []\n", 3, "v2",
         "eval(v0 + 1): variable 'v0' cannot be evaluated (it depends on itself?)"},
        {"num_epochs: 3\nmodifiers:\n  - !GMPruningModifier\n    final_sparsity: 0.5\n"
         "    end_epoch: eval(num_epoch)\n",
         5, "modifiers[0].end_epoch",
         "eval(num_epoch): unknown variable 'num_epoch' (did you mean 'num_epochs'?)"},
        {"modifiers:\n  - !GMPruningModifier\n    final_sparsity: 0.5\n    end_epoch: eval(1/0)\n",
         4, "modifiers[0].end_epoch", "eval(1/0): division by zero"},
        {"modifiers:\n  - !GMPruningModifier\n    final_sparsity: 0.5\n"
         "    end_epoch: eval(exec('1'))\n",
         4, "modifiers[0].end_epoch",
         "eval(exec('1')): calling 'exec' is not allowed (the functions are min, max, int, float, "
         "abs, round)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p = problems_of(cases[i].text, false, &st, NULL);
        ck_assert_msg(st == SP_ERR_INVALID_ARG && p.errors >= 1, "case %zu: no error", i);
        const sp_recipe_problem *q = &p.v[0];
        ck_assert_msg(q->line == cases[i].line && !strcmp(q->path, cases[i].path) &&
                          !strcmp(q->message, cases[i].msg),
                      "case %zu:\n got: line %d '%s' %s\nwant: line %d '%s' %s", i, q->line,
                      q->path, q->message, cases[i].line, cases[i].path, cases[i].msg);
        sp_recipe_problems_release(&p);
    }

    /* a billion laughs stops at the node budget, fast */
    char lol[2048];
    size_t k = (size_t)snprintf(lol, sizeof lol, "a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (char c = 'b'; c <= 'j'; c++)
        k += (size_t)snprintf(lol + k, sizeof lol - k, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, "
                                                       "*%c, *%c, *%c]\n",
                              c, c, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1,
                              c - 1);
    snprintf(lol + k, sizeof lol - k, "modifiers: []\n");
    p = problems_of(lol, false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert(strstr(p.v[0].message, "more than 200000 values (counting what its aliases copy)"));
    sp_recipe_problems_release(&p);
    /* variables chained deeper than 64, in reverse order: each evaluated
     * once (the chain used to take quadratic time), the chain cut */
    char *chain = malloc(80 * 32);
    size_t kc = 0;
    for (int i = 0; i < 70; i++)
        kc += (size_t)snprintf(chain + kc, 80 * 32 - kc, "v%d: eval(v%d + 1)\n", i, i + 1);
    snprintf(chain + kc, 80 * 32 - kc, "v70: 1\nm_modifiers:\n  - !ConstantPruningModifier {}\n");
    p = problems_of(chain, false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert_uint_eq(p.errors, 1);
    ck_assert_str_eq(p.v[0].path, "v64");
    ck_assert_str_eq(p.v[0].message, "eval(v65 + 1): variables refer to variables more than 64 deep");
    sp_recipe_problems_release(&p);
    free(chain);
    /* a map with many keys: a duplicate found at the end, the first kept */
    char *many = malloc(3000 * 24);
    size_t km = 0;
    for (int i = 0; i < 3000; i++)
        km += (size_t)snprintf(many + km, 3000 * 24 - km, "k%d: %d\n", i, i);
    snprintf(many + km, 3000 * 24 - km, "k7: 8\nm_modifiers: []\n");
    p = problems_of(many, false, &st, NULL);
    ck_assert_uint_eq(p.errors, 1);
    ck_assert_int_eq(p.v[0].line, 3001);
    ck_assert_str_eq(p.v[0].path, "k7");
    ck_assert_str_eq(p.v[0].message, "given twice (first at line 8, column 1)");
    sp_recipe_problems_release(&p);
    free(many);
    /* nesting */
    char deep[500];
    strcpy(deep, "a: ");
    memset(deep + 3, '[', 200);
    memset(deep + 203, ']', 200);
    deep[403] = '\0';
    p = problems_of(deep, false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert(strstr(p.v[0].message, "nested more than 64 levels deep"));
    sp_recipe_problems_release(&p);
}
END_TEST

START_TEST(test_all_problems)
{
    const char *y = "pruning_modifiers:\n"
                    "  - !GMPruningModifier\n"
                    "    final_sparsity: 1.5\n"
                    "    end_epoch: 4\n"
                    "    inter_func: exp\n"
                    "  - !MagnitudePruningModifier\n"
                    "    final_sparsity: 0.5\n"
                    "    mask_type: 3x\n"
                    "  - !NoSuchModifier\n"
                    "    x: 1\n";
    sp_status st;
    sp_recipe_problems p = problems_of(y, false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert_uint_eq(p.errors, 4);
    ck_assert_uint_eq(p.n, 4);
    const int lines[] = {3, 5, 8, 9};
    const char *paths[] = {"pruning_modifiers[0].final_sparsity", "pruning_modifiers[0].inter_func",
                           "pruning_modifiers[1].mask_type", "pruning_modifiers[2]"};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_msg(p.v[i].line == lines[i], "%zu: line %d", i, p.v[i].line);
        ck_assert_str_eq(p.v[i].path, paths[i]);
    }
    char buf[600];
    ck_assert_str_eq(sp_recipe_problem_str(&p.v[0], buf, sizeof buf),
                     "line 3: pruning_modifiers[0].final_sparsity: 1.5 is out of range [0, 1]");
    sp_recipe_problems_release(&p);
    /* the first one, and how many more, in sp_error */
    sp_recipe *r;
    sp_error err = {0};
    ck_assert_int_eq(sp_recipe_parse(&r, y, strlen(y), &err), SP_ERR_INVALID_ARG);
    ck_assert_str_eq(err.msg, "line 3: pruning_modifiers[0].final_sparsity: 1.5 is out of range "
                              "[0, 1] (and 3 more problems)");
}
END_TEST

START_TEST(test_variables_and_stages)
{
    /* SparseML: variables in any order; eval(name) of a list is the list */
    const char *y = "pruning_end: eval(num_epochs - quant_epochs)\n"
                    "num_epochs: 62\n"
                    "quant_epochs: 2\n"
                    "mask: [1, 4]\n"
                    "version: 1.1.0\n"
                    "pruning_modifiers:\n"
                    "  - !GMPruningModifier\n"
                    "    final_sparsity: eval(min(0.9, 0.1 * 8))\n"
                    "    end_epoch: eval(pruning_end * 0.5)\n"
                    "    mask_type: eval(mask)\n"
                    "quantization_modifiers:\n"
                    "  - !QuantizationModifier\n"
                    "    start_epoch: eval(num_epochs - quant_epochs)\n"
                    "  - !QuantizationModifier\n"
                    "    start_epoch: 1\n";
    sp_status st;
    sp_recipe *r;
    sp_recipe_problems p = problems_of(y, false, &st, &r);
    ck_assert_msg(st == SP_OK, "%s", p.n ? p.v[0].message : "");
    ck_assert_double_eq_tol(r->mods[0].final_sparsity, 0.8, 1e-15);
    ck_assert_double_eq(r->mods[0].end_epoch, 30);
    ck_assert_int_eq(r->mods[0].mask_type.kind, SP_PATTERN_BLOCK);
    ck_assert_int_eq(r->mods[0].mask_type.r, 1);
    ck_assert_int_eq(r->mods[0].mask_type.c, 4);
    ck_assert_str_eq(r->source_version, "1.1.0");
    /* quantization: not applied, one warning for the type */
    ck_assert_uint_eq(r->nmods, 3);
    ck_assert_int_eq(r->mods[1].type, SP_MOD_NOT_APPLIED);
    ck_assert_str_eq(r->mods[1].cls, "QuantizationModifier");
    ck_assert_uint_eq(r->nwarnings, 1);
    ck_assert(r->warnings[0].warning);
    ck_assert_str_eq(r->warnings[0].message,
                     "QuantizationModifier is not applied: sparsify does not quantize (2 modifiers "
                     "of this type left out; the rest of the recipe runs)");
    ck_assert_str_eq(r->mods[1].raw_json, "{\"start_epoch\":60}");
    sp_recipe_free(r);
    sp_recipe_problems_release(&p);

    /* llm-compressor: stages, run_type, map groups, aliases, stage variables */
    const char *s = "sparsity: 0.3\n"
                    "sparsity_stage:\n"
                    "  run_type: oneshot\n"
                    "  sparsity: 0.5\n"
                    "  sparsity_modifiers:\n"
                    "    MagnitudePruningModifier:\n"
                    "      sparsity: eval(sparsity)\n"
                    "      mask_structure: \"2:4\"\n"
                    "      targets: ['re:model.layers.\\d+$']\n"
                    "      ignore: [lm_head]\n"
                    "finetuning_stage:\n"
                    "  run_type: train\n"
                    "  finetuning_modifiers:\n"
                    "    ConstantPruningModifier:\n"
                    "      targets: __ALL__\n"
                    "      start: 0\n"
                    "      end: eval(sparsity * 4)\n";
    p = problems_of(s, false, &st, &r);
    ck_assert_msg(st == SP_OK, "%s %s", p.n ? p.v[0].path : "", p.n ? p.v[0].message : "");
    ck_assert_uint_eq(r->nmods, 2);
    const sp_modifier *m = &r->mods[0];
    ck_assert_str_eq(m->where, "sparsity_stage.sparsity_modifiers.MagnitudePruningModifier");
    ck_assert_str_eq(m->stage, "sparsity_stage");
    ck_assert_int_eq(m->run_type, SP_RUN_ONESHOT);
    ck_assert_double_eq(m->final_sparsity, 0.5); /* the stage's variable wins */
    ck_assert_int_eq(m->mask_type.kind, SP_PATTERN_NM);
    ck_assert_str_eq(m->params.text[0], "re:model.layers.\\d+$");
    ck_assert_str_eq(m->ignore.text[0], "lm_head");
    ck_assert_int_eq(r->mods[1].run_type, SP_RUN_TRAIN);
    ck_assert_double_eq(r->mods[1].end_epoch, 1.2); /* the top-level sparsity, 0.3 */
    sp_recipe_free(r);
    sp_recipe_problems_release(&p);

    /* "0:0" is unstructured; a bad run_type */
    p = problems_of("s:\n  run_type: calibrate\n  m_modifiers:\n    ConstantPruningModifier: {}\n",
                    false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert_str_eq(p.v[0].path, "s.run_type");
    ck_assert_str_eq(p.v[0].message, "expected oneshot or train, got calibrate");
    sp_recipe_problems_release(&p);
}
END_TEST

START_TEST(test_substitute)
{
    const char *y = "stage:\n  obcq_modifiers:\n    SparseGPTModifier:\n"
                    "      sparsity: 0.5\n      block_size: 128\n      mask_structure: \"2:4\"\n"
                    "      targets: [Linear]\n"
                    "  quant_modifiers:\n    GPTQModifier:\n      ignore: [lm_head]\n";
    sp_status st;
    sp_recipe *r;
    sp_recipe_problems p = problems_of(y, false, &st, &r);
    ck_assert_int_eq(st, SP_ERR_UNSUPPORTED);
    ck_assert_uint_eq(p.errors, 1);
    ck_assert_int_eq(p.v[0].line, 3);
    ck_assert_str_eq(p.v[0].path, "stage.obcq_modifiers.SparseGPTModifier");
    ck_assert_str_eq(p.v[0].message,
                     "SparseGPTModifier is not implemented by sparsify; the closest it has is "
                     "MagnitudePruningModifier (one-shot magnitude pruning to the same sparsity "
                     "and mask_structure, without calibration data or SparseGPT's weight "
                     "updates); --substitute runs that instead");
    sp_recipe_problems_release(&p);
    p = problems_of(y, true, &st, &r);
    ck_assert_int_eq(st, SP_OK);
    ck_assert_uint_eq(r->nmods, 2);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_MAGNITUDE);
    ck_assert_str_eq(r->mods[0].substitute_for, "SparseGPTModifier");
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.5);
    ck_assert_str_eq(r->mods[0].params.text[0], "Linear");
    ck_assert_uint_eq(r->nwarnings, 2);
    ck_assert(strstr(r->warnings[0].message, "SparseGPTModifier runs as MagnitudePruningModifier"));
    ck_assert(strstr(r->warnings[1].message, "GPTQModifier is not applied"));
    sp_recipe_free(r);
    sp_recipe_problems_release(&p);
    /* a rename of the substitute table; nothing close at all */
    p = problems_of("modifiers:\n  - !ACDCPruningModifier\n    compression_sparsity: 0.9\n"
                    "    start_epoch: 0\n    end_epoch: 2\n    momentum_buffer_reset: true\n",
                    true, &st, &r);
    ck_assert_int_eq(st, SP_OK);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_GMP);
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.9);
    sp_recipe_free(r);
    sp_recipe_problems_release(&p);
    p = problems_of("modifiers:\n  - !StructuredPruningModifier\n    final_sparsity: 0.5\n", true,
                    &st, NULL);
    ck_assert_int_eq(st, SP_ERR_UNSUPPORTED);
    ck_assert(strstr(p.v[0].message, "nothing it has is close"));
    sp_recipe_problems_release(&p);
    p = problems_of("modifiers:\n  - !LayerThinningModifier\n    param_group_dependency_map: {}\n"
                    "  - !ConstantPruningModifier {}\n",
                    true, &st, &r);
    ck_assert_int_eq(st, SP_OK);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_NOT_APPLIED);
    ck_assert(strstr(r->warnings[0].message, "LayerThinningModifier is left out"));
    sp_recipe_free(r);
    sp_recipe_problems_release(&p);
    /* found by fuzz_recipe_yaml: a recipe of nothing but a modifier left out
     * converted to an empty list, which does not read back */
    p = problems_of("modifiers:\n    LayerThinningModifier: {update_epochs: [1]}\n", true, &st, &r);
    ck_assert_int_eq(st, SP_OK);
    char *j = NULL;
    sp_error err = {0};
    ck_assert_int_eq(sp_recipe_to_json(r, &j, &err), SP_OK);
    sp_recipe_problems_release(&p);
    sp_recipe *r2 = NULL;
    sp_recipe_problems p2 = problems_of(j, true, &st, &r2);
    ck_assert_msg(st == SP_OK, "%s", j);
    ck_assert_str_eq(r2->mods[0].cls, "LayerThinningModifier");
    ck_assert_str_eq(r2->mods[0].raw_json, "{\"update_epochs\":[1]}");
    sp_recipe_problems_release(&p2);
    sp_recipe_free(r2);
    p2 = problems_of(j, false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_UNSUPPORTED);
    sp_recipe_problems_release(&p2);
    free(j);
    sp_recipe_free(r);
}
END_TEST

/* "score": wanda in a one-shot pruning modifier; WandaPruningModifier */
START_TEST(test_parse_score)
{
    sp_recipe *r = parse_ok(MOD("{\"type\": \"MagnitudePruningModifier\", \"final_sparsity\": 0.5, "
                                "\"params\": [\"a.weight\"], \"score\": \"wanda\"}, "
                                "{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5, "
                                "\"params\": [\"b.weight\"], \"mask_type\": \"2:4\", "
                                "\"score\": \"wanda\"}, "
                                "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, "
                                "\"params\": [\"c.weight\"], \"score\": \"magnitude\"}, "
                                "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, "
                                "\"params\": [\"d.weight\"]}"));
    ck_assert_int_eq(r->mods[0].score, SP_SCORE_WANDA);
    ck_assert_int_eq(r->mods[1].score, SP_SCORE_WANDA);
    ck_assert_int_eq(r->mods[2].score, SP_SCORE_MAGNITUDE);
    ck_assert_int_eq(r->mods[3].score, SP_SCORE_MAGNITUDE);
    /* the engine's rules carry it; row groups by default */
    const sp_recipe_tensor t[4] = {{"a.weight", SP_F32, 2}, {"b.weight", SP_F32, 2},
                                   {"c.weight", SP_F32, 2}, {"d.weight", SP_F32, 2}};
    sp_recipe_rules rr;
    sp_error err = {0};
    ck_assert_int_eq(sp_recipe_prune_rules(&rr, r, t, 4, NULL, &err), SP_OK);
    ck_assert_uint_eq(rr.n, 4);
    ck_assert_int_eq(rr.rules[0].score, SP_SCORE_WANDA);
    ck_assert_int_eq(rr.rules[0].group, SP_SCORE_GROUP_ROW);
    ck_assert_int_eq(rr.rules[1].score, SP_SCORE_WANDA);
    ck_assert_int_eq(rr.rules[2].score, SP_SCORE_MAGNITUDE);
    ck_assert_int_eq(rr.rules[3].score, SP_SCORE_MAGNITUDE);
    sp_recipe_rules_release(&rr);
    /* the normal form keeps it and reads back */
    char *j = NULL;
    ck_assert_int_eq(sp_recipe_to_json(r, &j, &err), SP_OK);
    sp_recipe *r2 = parse_ok(j);
    ck_assert_int_eq(r2->mods[0].score, SP_SCORE_WANDA);
    ck_assert_int_eq(r2->mods[2].score, SP_SCORE_MAGNITUDE);
    sp_recipe_free(r2);
    free(j);
    sp_recipe_free(r);
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"score\": \"obs\"}"),
              "modifiers[0].score: 'obs' is not one of magnitude, wanda");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"score\": 1}"),
              "modifiers[0].score: expected a string, got a number");
    parse_err(MOD("{\"type\": \"movement\", \"final_sparsity\": 0.5, \"score\": \"wanda\"}"),
              "modifiers[0].score: wanda does not apply to MovementPruningModifier (its scores "
              "are movement)");
    parse_err(MOD("{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.9, \"start_epoch\": 0, "
                  "\"end_epoch\": 5, \"score\": \"wanda\"}"),
              "modifiers[0].score: wanda is one-shot (start_epoch 0, end_epoch 5): it needs "
              "calibration data, which a training schedule does not have");
    parse_err(MOD("{\"type\": \"ConstantPruningModifier\", \"score\": \"wanda\"}"),
              "modifiers[0].score: not a field of ConstantPruningModifier");
    /* llm-compressor's WandaPruningModifier, as its recipes write it */
    r = parse_ok("sparsity_stage:\n  run_type: oneshot\n  sparsity_modifiers:\n"
                 "    WandaPruningModifier:\n      sparsity: 0.5\n      mask_structure: \"2:4\"\n"
                 "      sequential_update: true\n      sparsity_profile: null\n"
                 "      targets: ['re:model.layers.\\\\d+$']\n");
    ck_assert_uint_eq(r->nmods, 1);
    ck_assert_int_eq(r->mods[0].type, SP_MOD_MAGNITUDE);
    ck_assert_str_eq(r->mods[0].cls, "WandaPruningModifier");
    ck_assert_ptr_null(r->mods[0].substitute_for);
    ck_assert_int_eq(r->mods[0].score, SP_SCORE_WANDA);
    ck_assert_int_eq(r->mods[0].mask_type.kind, SP_PATTERN_NM);
    ck_assert_double_eq(r->mods[0].final_sparsity, 0.5);
    sp_recipe_free(r);
    parse_err("modifiers:\n  - !WandaPruningModifier\n    sparsity: 0.5\n"
              "    sparsity_profile: owl\n",
              "modifiers[0].sparsity_profile: OWL layer profiles are not supported (use null; "
              "'sparsify sensitivity --recipe-out' gives per-layer sparsities)");
    parse_err("modifiers:\n  - !WandaPruningModifier\n    sparsity: 0.5\n    score: magnitude\n",
              "modifiers[0].score: WandaPruningModifier scores by wanda");
}
END_TEST

/* ---- who owns which tensor */

START_TEST(test_assign)
{
    const sp_recipe_tensor t[] = {
        {"model.embed_tokens.weight", SP_F32, 2},
        {"model.layers.0.self_attn.q_proj.weight", SP_F32, 2},
        {"model.layers.0.input_layernorm.weight", SP_F32, 1},
        {"model.layers.0.mlp.up_proj.weight", SP_F32, 2},
        {"model.layers.0.mlp.up_proj.bias", SP_F32, 1},
        {"model.layers.1.self_attn.q_proj.weight", SP_F32, 2},
        {"model.layers.1.mlp.up_proj.weight", SP_F32, 2},
        {"model.norm.weight", SP_F32, 1},
        {"lm_head.weight", SP_F32, 2},
        {"conv.weight", SP_F32, 4},
    };
    const size_t n = sizeof t / sizeof t[0];
    long owner[16];
    double final[16];
    sp_error err = {0};
    sp_recipe_problems warn = {0};
    /* module names select the prunable weights inside; later stage wins */
    const char *y = "s1:\n  run_type: oneshot\n  a_modifiers:\n"
                    "    MagnitudePruningModifier:\n      sparsity: 0.5\n"
                    "      targets: ['re:model.layers.\\d+$']\n"
                    "s2:\n  b_modifiers:\n"
                    "    - !MagnitudePruningModifier\n      final_sparsity: 0.7\n"
                    "      params: [model.layers.1, Conv2d, nothing.here]\n"
                    "    - !MagnitudePruningModifier\n      final_sparsity: 0.9\n"
                    "      params: ['re:.*up_proj.weight']\n"
                    "      ignore: [model.layers.1]\n"
                    "    - !MagnitudePruningModifier\n      final_sparsity: 0.6\n"
                    "      params: [Linear]\n      ignore: ['re:.*lm_head']\n";
    sp_recipe *r = parse_ok(y);
    ck_assert_int_eq(sp_recipe_assign(r, t, n, SP_MOD_PRUNING_TYPES, SP_RUN_ANY, owner, final,
                                      &warn, &err),
                     SP_OK);
    const long want[] = {-1, 3, -1, 2, -1, 1, 1, -1, -1, 1};
    const double wantf[] = {0, 0.6, 0, 0.9, 0, 0.7, 0.7, 0, 0, 0.7};
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(owner[i] == want[i], "%s: owner %ld, want %ld", t[i].name, owner[i], want[i]);
        if (owner[i] >= 0)
            ck_assert_double_eq(final[i], wantf[i]);
    }
    /* one warning: the entry that selects nothing */
    ck_assert_uint_eq(warn.n, 1);
    ck_assert_str_eq(warn.v[0].path, "s2.b_modifiers[0]");
    ck_assert_str_eq(warn.v[0].message, "'nothing.here' selects no tensor of the model");
    sp_recipe_problems_release(&warn);
    /* oneshot stages only */
    ck_assert_int_eq(sp_recipe_assign(r, t, n, SP_MOD_PRUNING_TYPES, SP_RUN_ONESHOT, owner, NULL,
                                      NULL, &err),
                     SP_OK);
    const long want1[] = {-1, 0, -1, 0, -1, 0, 0, -1, -1, -1};
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(owner[i] == want1[i], "%s: owner %ld", t[i].name, owner[i]);
    /* the engine's rules */
    sp_recipe_rules rr;
    ck_assert_int_eq(sp_recipe_prune_rules(&rr, r, t, n, NULL, &err), SP_OK);
    ck_assert_uint_eq(rr.n, 3);
    ck_assert_ptr_eq(rr.mods[0], &r->mods[1]);
    ck_assert_uint_eq(rr.rules[0].ntensors, 3);
    ck_assert_str_eq(rr.rules[0].tensors[0].name, "model.layers.1.self_attn.q_proj.weight");
    ck_assert_double_eq(rr.rules[0].tensors[0].sparsity, 0.7);
    ck_assert_str_eq(rr.rules[0].tensors[2].name, "conv.weight");
    ck_assert_uint_eq(rr.rules[1].ntensors, 1);
    ck_assert_str_eq(rr.rules[1].tensors[0].name, "model.layers.0.mlp.up_proj.weight");
    ck_assert_double_eq(rr.rules[1].sparsity, 0.9);
    ck_assert_ptr_eq(rr.mods[2], &r->mods[3]);
    ck_assert_str_eq(rr.rules[2].tensors[0].name, "model.layers.0.self_attn.q_proj.weight");
    ck_assert_double_eq(rr.rules[2].tensors[0].sparsity, 0.6);
    sp_recipe_rules_release(&rr);
    sp_recipe_free(r);
    /* Linear minus lm_head; __ALL__ and exact names still name tensors */
    r = parse_ok("m_modifiers:\n  - !MagnitudePruningModifier\n    final_sparsity: 0.5\n"
                 "    params: [Linear]\n    ignore: ['re:.*lm_head', 'model.layers.1']\n"
                 "  - !ConstantPruningModifier\n    params: __ALL__\n");
    ck_assert_int_eq(sp_recipe_assign(r, t, n, SP_MOD_PRUNING_TYPES | (1u << SP_MOD_CONSTANT),
                                      SP_RUN_ANY, owner, NULL, NULL, &err),
                     SP_OK);
    const long want2[] = {1, 0, 1, 0, 1, 1, 1, 1, 1, 1};
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(owner[i] == want2[i], "%s: owner %ld", t[i].name, owner[i]);
    sp_recipe_free(r);
}
END_TEST

/* ---- training modifiers */

START_TEST(test_training_schedule)
{
    sp_recipe *r = parse_ok(
        "training_modifiers:\n"
        "  - !EpochRangeModifier\n    start_epoch: 0\n    end_epoch: 30\n"
        "  - !LearningRateFunctionModifier\n    start_epoch: 0.0\n    end_epoch: 2.0\n"
        "    lr_func: linear\n    init_lr: 8e-5\n    final_lr: 8e-6\n"
        "  - !LearningRateFunctionModifier\n    start_epoch: 2.0\n    end_epoch: 30.0\n"
        "    lr_func: cyclic_linear\n    cycle_epochs: 4.0\n    init_lr: 8e-5\n    final_lr: 8e-6\n"
        "  - !SetWeightDecayModifier\n    start_epoch: 3\n    weight_decay: 0.01\n");
    double lr, wd, e;
    ck_assert(sp_recipe_epochs(r, &e) && e == 30);
    ck_assert(sp_recipe_lr_at(r, 0, 10, &lr));
    ck_assert_double_eq_tol(lr, 8e-5, 1e-18);
    ck_assert(sp_recipe_lr_at(r, 1, 10, &lr));
    ck_assert_double_eq_tol(lr, 4.4e-5, 1e-18);
    /* cyclic: SparseML's step formula, restarting every 4 epochs (40 steps) */
    ck_assert(sp_recipe_lr_at(r, 2.0, 10, &lr));
    ck_assert_double_eq_tol(lr, 8e-5, 1e-18);
    ck_assert(sp_recipe_lr_at(r, 3.0, 10, &lr));
    ck_assert_double_eq_tol(lr, 8e-5 - 10.0 / 39.0 * (8e-5 - 8e-6), 1e-18);
    ck_assert(sp_recipe_lr_at(r, 6.0, 10, &lr));
    ck_assert_double_eq_tol(lr, 8e-5, 1e-18);
    ck_assert(!sp_recipe_weight_decay_at(r, 2.9, &wd));
    ck_assert(sp_recipe_weight_decay_at(r, 3, &wd) && wd == 0.01);
    sp_recipe_free(r);

    r = parse_ok("m_modifiers:\n"
                 "  - !LearningRateModifier\n    start_epoch: 0.0\n    lr_class: MultiStepLR\n"
                 "    lr_kwargs: {'milestones': [43, 60], 'gamma': 0.1}\n    init_lr: 0.0028\n"
                 "    end_epoch: -1.0\n    update_frequency: -1.0\n    constant_logging: False\n"
                 "  - !SetLearningRateModifier\n    start_epoch: 80\n    learning_rate: 0.5\n"
                 "  - !LearningRateFunctionModifier\n    start_epoch: 90\n    end_epoch: 100\n"
                 "    lr_func: cosine\n    init_lr: 0.1\n    final_lr: 0.0\n");
    ck_assert(sp_recipe_lr_at(r, 42.9, 100, &lr));
    ck_assert_double_eq_tol(lr, 0.0028, 1e-15);
    ck_assert(sp_recipe_lr_at(r, 43, 100, &lr));
    ck_assert_double_eq_tol(lr, 0.00028, 1e-15);
    ck_assert(sp_recipe_lr_at(r, 61, 100, &lr));
    ck_assert_double_eq_tol(lr, 0.000028, 1e-15);
    ck_assert(sp_recipe_lr_at(r, 85, 100, &lr) && lr == 0.5); /* set later: it wins */
    ck_assert(sp_recipe_lr_at(r, 95, 100, &lr));
    ck_assert_double_eq_tol(lr, 0.05, 1e-15);
    ck_assert(sp_recipe_lr_at(r, 120, 100, &lr));
    ck_assert_double_eq_tol(lr, 0.0, 1e-15);
    sp_recipe_free(r);

    r = parse_ok("m_modifiers:\n  - !LearningRateModifier\n    start_epoch: 2\n"
                 "    lr_class: StepLR\n    lr_kwargs: {step_size: 3, gamma: 0.5}\n"
                 "    init_lr: 1.0\n"
                 "  - !LearningRateModifier\n    start_epoch: 20\n    end_epoch: 22\n"
                 "    lr_class: ExponentialLR\n    lr_kwargs: {gamma: 0.9}\n    init_lr: 1.0\n");
    ck_assert(!sp_recipe_lr_at(r, 1.5, 10, &lr)); /* before any: the run's own rate */
    ck_assert(sp_recipe_lr_at(r, 4.9, 10, &lr) && lr == 1.0);
    ck_assert(sp_recipe_lr_at(r, 5.0, 10, &lr) && lr == 0.5);
    ck_assert(sp_recipe_lr_at(r, 11.0, 10, &lr) && lr == 0.125);
    ck_assert(sp_recipe_lr_at(r, 21.5, 10, &lr));
    ck_assert_double_eq_tol(lr, 0.9, 1e-15);
    ck_assert(sp_recipe_lr_at(r, 22.5, 10, &lr)); /* ended at 22: 0.9^2 */
    ck_assert_double_eq_tol(lr, 0.81, 1e-15);
    ck_assert(sp_recipe_lr_at(r, 30, 10, &lr)); /* StepLR changed last, at 29 */
    ck_assert_double_eq_tol(lr, pow(0.5, 9), 1e-15);
    sp_recipe_free(r);

    /* problems of the training modifiers */
    sp_status st;
    sp_recipe_problems p = problems_of(
        "m_modifiers:\n  - !LearningRateModifier\n    lr_class: CosineAnnealingWarmRestarts\n"
        "    init_lr: 0.1\n    start_epoch: 0\n"
        "  - !LearningRateModifier\n    lr_class: MultiStepLR\n    init_lr: 0.1\n"
        "    start_epoch: 5\n    lr_kwargs: {milestones: [3]}\n"
        "  - !LearningRateFunctionModifier\n    lr_func: step\n    init_lr: 0.1\n"
        "    final_lr: 0.01\n    start_epoch: 0\n    end_epoch: 2\n    update_frequency: 1\n"
        "  - !EpochRangeModifier\n    start_epoch: 2\n    end_epoch: 1\n"
        "  - !SetLearningRateModifier\n    learning_rate: 0.1\n    param_groups: [0, 1]\n",
        false, &st, NULL);
    ck_assert_int_eq(st, SP_ERR_INVALID_ARG);
    ck_assert_uint_eq(p.errors, 6);
    ck_assert_str_eq(p.v[0].message,
                     "'CosineAnnealingWarmRestarts' is not one of StepLR, MultiStepLR, ExponentialLR");
    ck_assert_str_eq(p.v[1].message, "milestone 3 is not between start_epoch and end_epoch");
    ck_assert_str_eq(p.v[2].message, "'step' is not one of linear, cosine, cyclic_linear");
    ck_assert_str_eq(p.v[3].message, "must be -1 (updates every step)");
    ck_assert_str_eq(p.v[4].message, "1 must be after start_epoch 2");
    ck_assert_str_eq(p.v[5].message, "sparsify trains one parameter group: leave it out (or [0])");
    sp_recipe_problems_release(&p);
}
END_TEST

/* ---- the normalised form reads back the same */

START_TEST(test_to_json)
{
    sp_recipe *r = NULL;
    sp_error err = {0};
    const char *g = "x_modifiers:\n  - !GlobalMagnitudePruningModifier\n"
                    "    final_sparsity: {0.5: [a.weight]}\n    global_sparsity: false\n";
    ck_assert_int_eq(sp_recipe_parse(&r, g, strlen(g), &err), SP_ERR_INVALID_ARG);
    ck_assert(strstr(err.msg, "global_sparsity: must be true for GlobalMagnitudePruningModifier"));
    const char *y =
        "v: 0.75\n"
        "s:\n  run_type: oneshot\n  x_modifiers:\n"
        "    MovementPruningModifier:\n      sparsity: eval(v)\n      end: 4\n"
        "      targets: ['re:.*fc.*']\n      mask_mode: soft\n"
        "    QuantizationModifier:\n      scheme: {bits: eval(4 * 2)}\n"
        "t:\n  y_modifiers:\n"
        "    - !LearningRateModifier\n      lr_class: MultiStepLR\n"
        "      lr_kwargs: {milestones: [2, 3]}\n      init_lr: 0.1\n"
        "      start_epoch: 0\n"
        "    - !DistillationModifier\n      hardness: 0.9\n"
        "    - !GMPruningModifier\n      final_sparsity: {0.5: [a.weight], 0.25: 're:b.*'}\n"
        "      end_epoch: 3\n";
    r = parse_ok(y);
    char *j1 = NULL, *j2 = NULL;
    ck_assert_int_eq(sp_recipe_to_json(r, &j1, &err), SP_OK);
    sp_recipe *r2 = parse_ok(j1);
    ck_assert_int_eq(sp_recipe_to_json(r2, &j2, &err), SP_OK);
    ck_assert_str_eq(j1, j2);
    ck_assert_uint_eq(r2->nmods, r->nmods);
    ck_assert_str_eq(r2->mods[0].stage, "s");
    ck_assert_int_eq(r2->mods[0].run_type, SP_RUN_ONESHOT);
    ck_assert(r2->mods[0].soft_mask);
    ck_assert_double_eq(r2->mods[0].final_sparsity, 0.75);
    ck_assert(strstr(j1, "\"bits\":\t8") || strstr(j1, "\"bits\": 8"));
    ck_assert_uint_eq(r2->mods[4].noverrides, 2);
    ck_assert_double_eq(r2->mods[4].overrides[1].sparsity, 0.25);
    ck_assert_uint_eq(r2->mods[2].nmilestones, 2);
    free(j1);
    free(j2);
    sp_recipe_free(r);
    sp_recipe_free(r2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recipe");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"recipe_parse_types", test_parse_types},
        {"recipe_parse_fields", test_parse_fields},
        {"recipe_parse_errors", test_parse_errors},
        {"recipe_parse_score", test_parse_score},
        {"recipe_load", test_recipe_load},
        {"recipe_free", test_recipe_free},
        {"recipe_bundled", test_bundled},
        {"modifier_targets", test_modifier_targets},
        {"modifier_final_for", test_modifier_final_for},
        {"modifier_sparsity_at", test_modifier_sparsity_at},
        {"modifier_prunes_type_str", test_modifier_prunes_type_str},
        {"expr_table", test_expr_table},
        {"yaml", test_yaml},
        {"all_problems", test_all_problems},
        {"variables_and_stages", test_variables_and_stages},
        {"substitute", test_substitute},
        {"assign", test_assign},
        {"training_schedule", test_training_schedule},
        {"to_json", test_to_json},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
