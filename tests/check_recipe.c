/* Unit tests for recipes/: parsing, validation messages, bundled templates,
 * and the modifier queries. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sparsify/prune_ckpt.h"
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

static void parse_err(const char *json, const char *want)
{
    sp_recipe *r = (sp_recipe *)1;
    sp_error err = {0};
    sp_status st = sp_recipe_parse(&r, json, strlen(json), &err);
    ck_assert_msg(st == SP_ERR_INVALID_ARG, "expected an error for %s", json);
    ck_assert_ptr_null(r);
    ck_assert_msg(!strcmp(err.msg, want), "for %s\n got: %s\nwant: %s", json, err.msg, want);
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
    ck_assert_uint_eq(m->nparams, 2);
    ck_assert_str_eq(m->params[0], "re:.*attention.*weight");
    ck_assert_str_eq(m->params[1], "fc.weight");
    ck_assert_uint_eq(m->nignore, 1);
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
    ck_assert_uint_eq(m->nparams, 0);
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
    ck_assert_uint_eq(m->overrides[0].nparams, 2);
    ck_assert_double_eq(m->overrides[1].sparsity, 0.5);
    ck_assert_uint_eq(m->nparams, 3); /* the union */
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
              "modifiers[0].finl_sparsity: unknown field");
    parse_err(MOD("{\"type\": \"constant\", \"final_sparsity\": 0.5}"),
              "modifiers[0].final_sparsity: not a field of ConstantPruningModifier");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"hardness\": 0.5}"),
              "modifiers[0].hardness: not a field of MagnitudePruningModifier");
    parse_err(MOD("{\"type\": \"OBSPruningModifier\"}"),
              "modifiers[0].type: unknown modifier type 'OBSPruningModifier' (expected one of "
              "MagnitudePruningModifier, GMPruningModifier, GlobalMagnitudePruningModifier, "
              "MovementPruningModifier, ConstantPruningModifier, DistillationModifier)");
    parse_err(MOD("{\"final_sparsity\": 0.5}"), "modifiers[0].type: missing");
    parse_err(MOD("{\"type\": 3}"), "modifiers[0].type: expected a string, got a number");
    parse_err(MOD("3"), "modifiers[0]: expected an object, got a number");
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
              "modifiers[0].params: empty list");
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
              "modifiers[0].final_sparsity: given twice");
    parse_err(MOD("{\"type\": \"distillation\", \"hardness\": 1.5}"),
              "modifiers[0].hardness: 1.5 is out of range [0, 1]");
    parse_err(MOD("{\"type\": \"distillation\", \"temperature\": 0}"),
              "modifiers[0].temperature: 0 must be > 0");
    parse_err(MOD("{\"type\": \"distillation\", \"teacher\": 1}"),
              "modifiers[0].teacher: expected a string, got a number");
    parse_err(MOD("{\"type\": \"magnitude\", \"final_sparsity\": 0.5, \"end_epoch\": -1}"),
              "modifiers[0].end_epoch: -1 is before start_epoch 0");
    /* recipe level */
    parse_err("{\"version\": 2, \"modifiers\": []}", "version: 2 is not supported (expected 1)");
    parse_err("{\"version\": \"1\", \"modifiers\": []}", "version: expected a number, got a string");
    parse_err("{\"version\": 1}", "modifiers: missing");
    parse_err("{\"modifiers\": {}}", "modifiers: expected an array, got an object");
    parse_err("{\"modifiers\": []}", "modifiers: empty list");
    parse_err("{\"modifiers\": [], \"stages\": 1}",
              "stages: unknown field (a recipe has version, modifiers, name, description)");
    parse_err("[1]", "a recipe must be a JSON object, got an array");
    parse_err("{\"modifiers\": [\n  {\"type\": }]}", "invalid JSON at line 2, column 12");
    parse_err("{\"modifiers\": [{\"type\": \"constant\"}]} x",
              "invalid JSON at line 1, column 39: text after the recipe");
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
    snprintf(want, sizeof want, "'%s': modifiers[0].final_sparsity: 1.5 is out of range [0, 1]", path);
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
    ck_assert_ptr_nonnull(m[0].ignore_re[0]);
    ck_assert_ptr_nonnull(m[1].params_re[0]);
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

START_TEST(test_parse_score)
{
    sp_recipe *r = parse_ok(MOD("{\"type\": \"MagnitudePruningModifier\", \"final_sparsity\": 0.5, "
                                "\"score\": \"wanda\"}, "
                                "{\"type\": \"GMPruningModifier\", \"final_sparsity\": 0.5, "
                                "\"mask_type\": \"2:4\", \"score\": \"wanda\"}, "
                                "{\"type\": \"magnitude\", \"final_sparsity\": 0.5, "
                                "\"score\": \"magnitude\"}, "
                                "{\"type\": \"magnitude\", \"final_sparsity\": 0.5}"));
    ck_assert_int_eq(r->mods[0].score, SP_SCORE_WANDA);
    ck_assert_int_eq(r->mods[1].score, SP_SCORE_WANDA);
    ck_assert_int_eq(r->mods[2].score, SP_SCORE_MAGNITUDE);
    ck_assert_int_eq(r->mods[3].score, SP_SCORE_MAGNITUDE);
    sp_prune_rule rules[4];
    ck_assert_uint_eq(sp_prune_rules_from_recipe(r, rules), 4);
    ck_assert_int_eq(rules[0].score, SP_SCORE_WANDA);
    ck_assert_int_eq(rules[1].score, SP_SCORE_WANDA);
    ck_assert_int_eq(rules[1].group, SP_SCORE_GROUP_ROW);
    ck_assert_int_eq(rules[2].score, SP_SCORE_MAGNITUDE);
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
