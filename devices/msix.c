/* msix.c - MSI-X for a PCI function: table/PBA emulation, vector masking, GSI routes and irqfds, checkpoint. */
#include "msix.h"

#include <errno.h>
#include <libfdt.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/le.h"
#include "../vmm/vm.h"

#define ENTRY_MASKED 0x1u

int msix_init(struct msix *m, struct vm *vm, unsigned nvec)
{
	memset(m, 0, sizeof(*m));
	if (!nvec || nvec > MSIX_MAX_VECTORS)
		return -EINVAL;
	m->vm = vm;
	m->nvec = nvec;
	m->table = calloc(nvec * 4, sizeof(*m->table));
	m->pba = calloc(msix_pba_bytes(nvec) / 8, sizeof(*m->pba));
	m->vec = calloc(nvec, sizeof(*m->vec));
	if (!m->table || !m->pba || !m->vec) {
		free(m->table);
		free(m->pba);
		free(m->vec);
		return -ENOMEM;
	}
	for (unsigned v = 0; v < nvec; v++) {
		m->table[4 * v + 3] = ENTRY_MASKED;
		m->vec[v].gsi = m->vec[v].efd = -1;
	}
	pthread_mutex_init(&m->lock, NULL);
	return 0;
}

void msix_destroy(struct msix *m)
{
	if (!m->table)
		return;
	for (unsigned v = 0; v < m->nvec; v++) {
		if (m->vec[v].efd < 0)
			continue;
		vm_irqfd(m->vm, m->vec[v].efd, (unsigned)m->vec[v].gsi, false);
		close(m->vec[v].efd);
	}
	free(m->table);
	free(m->pba);
	free(m->vec);
	m->table = NULL;
	pthread_mutex_destroy(&m->lock);
}

int msix_add_cap(struct msix *m, struct pci_dev *dev, unsigned bir, uint32_t table_off, uint32_t pba_off)
{
	uint8_t cap[MSIX_CAP_LEN] = { PCI_CAP_ID_MSIX }, w[MSIX_CAP_LEN] = { 0 };
	if (bir >= PCI_NUM_BARS || (table_off | pba_off) & 7)
		return -EINVAL;
	st_le(cap + PCI_MSIX_FLAGS, m->nvec - 1, 2);
	st_le(w + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
	st_le(cap + PCI_MSIX_TABLE, table_off | bir, 4);
	st_le(cap + PCI_MSIX_PBA, pba_off | bir, 4);
	int r = pci_dev_add_cap(dev, cap, sizeof(cap), w);
	if (r >= 0)
		m->cap = (unsigned)r;
	return r;
}

static uint64_t vec_addr(const struct msix *m, unsigned v)
{
	return (uint64_t)m->table[4 * v + 1] << 32 | m->table[4 * v];
}

static bool vec_masked(const struct msix *m, unsigned v)
{
	return !m->enabled || m->fmask || (m->table[4 * v + 3] & ENTRY_MASKED);
}

static void deliver(struct msix *m, unsigned v)
{
	struct msix_vector *e = &m->vec[v];
	uint64_t addr = vec_addr(m, v);
	uint32_t data = m->table[4 * v + 2];
	if (m->observer)
		m->observer(m->observer_opaque, v, addr, data);
	if (e->efd >= 0 && !e->route_stale) {
		uint64_t one = 1;
		if (write(e->efd, &one, sizeof(one)) == sizeof(one))
			return;
	}
	vm_signal_msi(m->vm, addr, data);
}

/* Bring vector v's route and irqfd in line with its table entry, then fire it if it was pending.
 * Only deliverable vectors are synced: drivers rewrite a masked entry a dword at a time, and only the
 * final message matters. m->lock held. */
static void sync_vector(struct msix *m, unsigned v)
{
	if (vec_masked(m, v))
		return;
	struct msix_vector *e = &m->vec[v];
	uint64_t addr = vec_addr(m, v);
	uint32_t data = m->table[4 * v + 2];
	if (e->gsi < 0) {
		int gsi = vm_msi_route_add(m->vm, addr, data);
		if (gsi >= 0) {
			e->gsi = gsi;
			e->routed_addr = addr;
			e->routed_data = data;
			e->route_stale = false;
			e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			if (e->efd >= 0 && vm_irqfd(m->vm, e->efd, (unsigned)gsi, true)) {
				close(e->efd);
				e->efd = -1;
			}
		}
	} else if (e->routed_addr != addr || e->routed_data != data || e->route_stale) {
		e->route_stale = vm_msi_route_update(m->vm, (unsigned)e->gsi, addr, data) != 0;
		if (!e->route_stale) {
			e->routed_addr = addr;
			e->routed_data = data;
		}
	}
	uint64_t bit = 1ull << (v % 64);
	if (m->pba[v / 64] & bit) {
		m->pba[v / 64] &= ~bit;
		deliver(m, v);
	}
}

void msix_table_access(struct msix *m, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	if (!is_write)
		memset(data, 0, len);
	if ((len != 4 && len != 8) || off % len || off >= msix_table_bytes(m->nvec))
		return;
	pthread_mutex_lock(&m->lock);
	for (unsigned k = 0; k < len / 4; k++) {
		unsigned w = (unsigned)(off / 4) + k;
		if (!is_write) {
			st_le(data + 4 * k, m->table[w], 4);
			continue;
		}
		uint32_t val = ld_le32(data + 4 * k);
		if (w % 4 == 3)
			val &= ENTRY_MASKED; /* reserved control bits read zero */
		m->table[w] = val;
		sync_vector(m, w / 4); /* reroutes a live entry, fires a pending one on unmask */
	}
	pthread_mutex_unlock(&m->lock);
}

void msix_pba_access(struct msix *m, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	if (is_write)
		return;
	memset(data, 0, len);
	if ((len != 4 && len != 8) || off % len || off >= msix_pba_bytes(m->nvec))
		return;
	pthread_mutex_lock(&m->lock);
	uint64_t w = m->pba[off / 8];
	pthread_mutex_unlock(&m->lock);
	st_le(data, w >> (8 * (off % 8)), len);
}

static void apply_ctrl(struct msix *m, const struct pci_dev *dev)
{
	uint16_t ctrl = ld_le16(dev->cfg + m->cap + PCI_MSIX_FLAGS);
	m->enabled = ctrl & PCI_MSIX_FLAGS_ENABLE;
	m->fmask = ctrl & PCI_MSIX_FLAGS_MASKALL;
	for (unsigned v = 0; v < m->nvec; v++)
		sync_vector(m, v);
}

void msix_cfg_update(struct msix *m, const struct pci_dev *dev)
{
	pthread_mutex_lock(&m->lock);
	apply_ctrl(m, dev);
	pthread_mutex_unlock(&m->lock);
}

bool msix_enabled(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	bool e = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return e;
}

bool msix_notify(struct msix *m, unsigned v)
{
	pthread_mutex_lock(&m->lock);
	bool on = m->enabled;
	if (on && v < m->nvec) {
		if (vec_masked(m, v))
			m->pba[v / 64] |= 1ull << (v % 64);
		else
			deliver(m, v);
	}
	pthread_mutex_unlock(&m->lock);
	return on;
}

void msix_set_observer(struct msix *m, msix_observer_fn fn, void *opaque)
{
	pthread_mutex_lock(&m->lock);
	m->observer = fn;
	m->observer_opaque = opaque;
	pthread_mutex_unlock(&m->lock);
}

int msix_save(struct msix *m, void *fdt)
{
	uint32_t tlen = msix_table_bytes(m->nvec), plen = msix_pba_bytes(m->nvec);
	uint8_t *buf = malloc(tlen + plen);
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	for (unsigned w = 0; w < m->nvec * 4; w++)
		st_le(buf + 4 * w, m->table[w], 4);
	for (unsigned w = 0; w < plen / 8; w++)
		st_le(buf + tlen + 8 * w, m->pba[w], 8);
	pthread_mutex_unlock(&m->lock);
	int r = fdt_property(fdt, "pci-msix-table", buf, (int)tlen);
	r = r ?: fdt_property(fdt, "pci-msix-pba", buf + tlen, (int)plen);
	free(buf);
	return r ? -EINVAL : 0;
}

int msix_check_saved(const struct msix *m, const void *fdt, int node)
{
	if (!fdtp_exact(fdt, node, "pci-msix-table", msix_table_bytes(m->nvec)) ||
	    !fdtp_exact(fdt, node, "pci-msix-pba", msix_pba_bytes(m->nvec)))
		return -EINVAL;
	return 0;
}

void msix_restore(struct msix *m, const struct pci_dev *dev, const void *fdt, int node)
{
	const uint8_t *tbl = fdtp_exact(fdt, node, "pci-msix-table", msix_table_bytes(m->nvec));
	const uint8_t *pba = fdtp_exact(fdt, node, "pci-msix-pba", msix_pba_bytes(m->nvec));
	if (!tbl || !pba)
		return;
	pthread_mutex_lock(&m->lock);
	for (unsigned w = 0; w < m->nvec * 4; w++)
		m->table[w] = ld_le32(tbl + 4 * w) & (w % 4 == 3 ? ENTRY_MASKED : ~0u);
	for (unsigned w = 0; w < msix_pba_bytes(m->nvec) / 8; w++) {
		unsigned left = m->nvec - 64 * w; /* pending bits past the last vector do not exist */
		m->pba[w] = ld_le(pba + 8 * w, 8) & (left >= 64 ? ~0ull : (1ull << left) - 1);
	}
	apply_ctrl(m, dev);
	pthread_mutex_unlock(&m->lock);
}
