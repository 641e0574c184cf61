/* test_fdt_prop.c - fdtp_whole (a tree from a file or the wire, checked before libfdt walks it) and the checked readers. */
#include "../../vmm/fdt_prop.h"
#include "test.h"

#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <string.h>

static uint8_t tree[512];

/* A small tree as the state writer makes one: root with a u32, a u64 and a child node. */
static size_t make_tree(void)
{
	CHECK_EQ(fdt_create(tree, sizeof(tree)), 0);
	CHECK_EQ(fdt_finish_reservemap(tree), 0);
	CHECK_EQ(fdt_begin_node(tree, ""), 0);
	CHECK_EQ(fdtp_put_u32(tree, "a", 7), 0);
	CHECK_EQ(fdtp_put_u64(tree, "b", 0x1122334455667788ull), 0);
	CHECK_EQ(fdt_begin_node(tree, "cpu@0"), 0);
	CHECK_EQ(fdtp_put_blob(tree, "regs", "xyz", 3), 0);
	CHECK_EQ(fdt_end_node(tree), 0);
	CHECK_EQ(fdt_end_node(tree), 0);
	CHECK_EQ(fdt_finish(tree), 0);
	return fdt_totalsize(tree);
}

static void test_whole(void)
{
	size_t len = make_tree();
	CHECK(fdtp_whole(tree, len));
	CHECK(fdtp_whole(tree, sizeof(tree))); /* trailing room is fine */
	CHECK(!fdtp_whole(tree, len - 1));     /* a tree longer than its buffer */
	CHECK(!fdtp_whole(tree, 39));          /* shorter than a header: nothing read past 39 bytes */
	CHECK(!fdtp_whole(tree, 0));

	/* The fuzzer's find: version 2 makes libfdt 1.6.1's fdt_get_name return NULL for the root,
	 * which its fdt_check_full then dereferenced. Refused before fdt_check_full runs. */
	fdt_set_version(tree, 2);
	fdt_set_last_comp_version(tree, 0);
	CHECK(!fdtp_whole(tree, len));
	make_tree();
	fdt_set_version(tree, 16);
	CHECK(!fdtp_whole(tree, len));

	/* a structure block that claims more than the tree holds */
	make_tree();
	fdt_set_size_dt_struct(tree, (uint32_t)len);
	CHECK(!fdtp_whole(tree, len));

	/* a node name with no terminating NUL inside the structure block: the first tag's name */
	make_tree();
	uint8_t *st = tree + fdt_off_dt_struct(tree);
	memset(st + 4, 'x', fdt_size_dt_struct(tree) - 4);
	CHECK(!fdtp_whole(tree, len));

	/* an unknown tag */
	make_tree();
	uint32_t bad = cpu_to_fdt32(0x77);
	memcpy(st, &bad, 4);
	CHECK(!fdtp_whole(tree, len));
}

static void test_readers(void)
{
	make_tree();
	uint32_t a = 0;
	uint64_t b = 0;
	CHECK_EQ(fdtp_u32(tree, 0, "a", &a), 0);
	CHECK_EQ(a, 7);
	CHECK_EQ(fdtp_u32_max(tree, 0, "a", 6, &a), -EINVAL);
	CHECK_EQ(fdtp_u64(tree, 0, "b", &b), 0);
	CHECK(b == 0x1122334455667788ull);
	CHECK_EQ(fdtp_u32(tree, 0, "b", &a), -EINVAL); /* another size */
	CHECK_EQ(fdtp_u32(tree, 0, "missing", &a), -EINVAL);
	int cpu = fdt_subnode_offset(tree, 0, "cpu@0");
	CHECK(cpu > 0);
	CHECK(fdtp_exact(tree, cpu, "regs", 3) != NULL);
	CHECK(fdtp_exact(tree, cpu, "regs", 4) == NULL);
	const uint8_t *p;
	uint32_t n;
	CHECK_EQ(fdtp_ref(tree, cpu, "regs", 3, &p, &n), 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(fdtp_ref(tree, cpu, "regs", 2, &p, &n), -EINVAL);
}

int main(void)
{
	test_whole();
	test_readers();
	TEST_DONE("test_fdt_prop");
}
