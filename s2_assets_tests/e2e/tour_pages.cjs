// The README's five-minute tour, in a real Chromium: the asset graph, the Automation page and
// one backfill's page, each saved as a screenshot (the partition and quicklook shots come from
// ndvi_page.cjs). Prints one JSON object with the text each page shows; test_services.py
// asserts on it.
//
//   node tour_pages.cjs <base url> <backfill id> <screenshot dir>
//
// Needs NODE_PATH to hold playwright-core and S2_E2E_CHROMIUM (default /usr/bin/chromium).
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [base, backfillId, shotDir] = process.argv.slice(2);
const TIMEOUT_MS = 30000;

async function visit(page, url, waitFor, shot) {
  await page.goto(url, { waitUntil: 'networkidle' });
  await page.getByText(waitFor, { exact: true }).first().waitFor();
  await page.waitForLoadState('networkidle');
  // The newsletter dialog of a fresh instance shows up whenever its query returns; a
  // screenshot takes no action that would trigger the locator handler, so close it here.
  await page.waitForTimeout(1500);
  const skip = page.getByRole('button', { name: 'Skip' });
  if (await skip.isVisible()) {
    await skip.click();
    await skip.waitFor({ state: 'hidden' });
  }
  await page.screenshot({ path: path.join(shotDir, shot) });
  return page.innerText('body');
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.S2_E2E_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const result = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(TIMEOUT_MS);
    // The lineage of ndvi upstream: acquisitions -> l1c, l2a -> cloudmask -> ndvi. (The global
    // lineage page starts with every group collapsed.)
    result.graph = await visit(
      page, `${base}/assets/ndvi?view=lineage&lineageScope=upstream&lineageDepth=4`,
      'cloudmask', 'tour-asset-graph.png');
    result.automation = await visit(page, `${base}/automation`, 'new_acquisitions_sensor', 'tour-automation.png');
    result.backfill = await visit(page, `${base}/runs/b/${backfillId}`, 'Partitions targeted', 'tour-backfill.png');
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
