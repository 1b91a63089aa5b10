package picker

import (
	"context"
	_ "embed"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	eventv1 "herald/shared/event/v1"
)

//go:embed sql/catalog.sql
var catalogSQL string

// maxCachedItems bounds the catalog cache across tenants; past it the
// cache starts over.
const maxCachedItems = 500_000

// catalogCache keeps catalog items per tenant at one catalog version. A
// tenant's version goes up in every transaction that changes its catalog
// (migration 00004's triggers), and a batch reads the version and the items
// in one snapshot, so items cached at the version a batch reads are exactly
// what the database would return: consecutive batches of a job read only
// the items no earlier batch asked for.
type catalogCache struct {
	mu      sync.Mutex
	tenants map[string]*tenantCatalog
	size    int
}

type tenantCatalog struct {
	version int64
	items   map[string]*Item    // in stock, any price
	missing map[string]struct{} // not in stock, or not in the catalog
	best    map[bestSellersKey][]string
}

type bestSellersKey struct {
	floor int64
	n     int
}

// read fills d.Catalog with the eligible items among ids and the catalog's
// best sellers (wantBest of them, at or above floor) and d.CatalogBestSellers,
// reading through tx what the cache does not hold.
func (c *catalogCache) read(ctx context.Context, tx pgx.Tx, tenant string, d *Data, ids []string, floor int64, wantBest int) error {
	key := bestSellersKey{floor, wantBest}
	c.mu.Lock()
	tc := c.tenant(tenant, d.CatalogVersion)
	var unknown []string
	for _, id := range ids {
		if _, ok := tc.items[id]; ok {
			continue
		}
		if _, ok := tc.missing[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	_, haveBest := tc.best[key]
	c.mu.Unlock()

	if len(unknown) > 0 || (wantBest > 0 && !haveBest) {
		n := wantBest
		if haveBest {
			n = 0
		}
		found, bests, err := queryCatalog(ctx, tx, tenant, unknown, floor, n)
		if err != nil {
			return err
		}
		c.mu.Lock()
		tc = c.tenant(tenant, d.CatalogVersion)
		for _, it := range found {
			if _, ok := tc.items[it.Product.Id]; !ok {
				tc.items[it.Product.Id] = it
				c.size++
			}
		}
		for _, id := range unknown {
			if _, ok := tc.items[id]; !ok {
				tc.missing[id] = struct{}{}
				c.size++
			}
		}
		if n > 0 {
			tc.best[key] = bests
		}
		c.mu.Unlock()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	tc = c.tenant(tenant, d.CatalogVersion)
	d.CatalogBestSellers = tc.best[key]
	d.Catalog = make(map[string]*Item, len(ids)+len(d.CatalogBestSellers))
	for _, list := range [][]string{ids, d.CatalogBestSellers} {
		for _, id := range list {
			if it := tc.items[id]; it != nil && it.Product.PriceCents >= floor {
				d.Catalog[id] = it
			}
		}
	}
	if c.size > maxCachedItems {
		c.tenants, c.size = nil, 0
	}
	return nil
}

// tenant returns the tenant's cache at version, emptied if it was at
// another one. c.mu must be held.
func (c *catalogCache) tenant(tenant string, version int64) *tenantCatalog {
	tc := c.tenants[tenant]
	if tc != nil && tc.version == version {
		return tc
	}
	if tc != nil {
		c.size -= len(tc.items) + len(tc.missing)
	}
	tc = &tenantCatalog{version: version, items: map[string]*Item{}, missing: map[string]struct{}{},
		best: map[bestSellersKey][]string{}}
	if c.tenants == nil {
		c.tenants = map[string]*tenantCatalog{}
	}
	c.tenants[tenant] = tc
	return tc
}

// queryCatalog reads the in-stock items among ids and the n best sellers at
// or above floor (their ids, best first), in one query.
func queryCatalog(ctx context.Context, tx pgx.Tx, tenant string, ids []string, floor int64, n int) ([]*Item, []string, error) {
	rows, _ := tx.Query(ctx, catalogSQL, tenant, ids, floor, n)
	var items []*Item
	var best []string
	for rows.Next() {
		it := &Item{Product: &eventv1.Product{}}
		pr := it.Product
		var rank int64
		if err := rows.Scan(&pr.Id, &pr.Title, &pr.Brand, &pr.Url, &pr.ImageUrl, &pr.PriceCents, &pr.CompareAtCents,
			&pr.Currency, &pr.Rating, &pr.Reviews, &it.Categories, &rank); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read catalog: %w", err)
		}
		items = append(items, it)
		if rank > 0 {
			if need := int(rank); need > len(best) {
				best = append(best, make([]string, need-len(best))...)
			}
			best[rank-1] = pr.Id
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read catalog: %w", err)
	}
	return items, best, nil
}
