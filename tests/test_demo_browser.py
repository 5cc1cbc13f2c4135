"""The demo in a real browser: headless Chromium driven by Selenium.

Loads the page, shows an error by clicking Predict with no image, runs a zero-shot
prediction by clicking a gallery picture and Predict, searches, finds similar images,
does puppy algebra, and saves a screenshot of each tab under artifacts/screenshots/
(gitignored) to look at.

Needs Debian's `chromium` and `chromium-driver` (installed here when missing and run
as root, else skipped) and the `selenium` package (skipped without it).
"""

import os
import pathlib
import shutil
import subprocess
import tempfile

import PIL.Image
import pytest

webdriver = pytest.importorskip(
    'selenium.webdriver', reason='selenium is not installed (pip install selenium)')
from selenium.webdriver.chrome.service import Service  # pylint: disable=wrong-import-position
from selenium.webdriver.common.by import By  # pylint: disable=wrong-import-position
from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=wrong-import-position

# The module's demo server, shared code: test_demo's fixtures.
from test_demo import demo_workdir, server  # pylint: disable=unused-import,wrong-import-position

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / 'artifacts' / 'screenshots'
FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--disable-dev-shm-usage', '--window-size=1280,1200')


def _install_chromium():
  if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
    return
  if os.geteuid() != 0:
    pytest.skip(f'{CHROMIUM} is missing and this is not root: apt-get install chromium '
                'chromium-driver to run the browser test')
  env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
  for command in (['apt-get', 'update', '-qq'],
                  ['apt-get', 'install', '-y', '-qq', 'chromium', 'chromium-driver']):
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900,
                          check=False)
    if proc.returncode:
      pytest.skip(f'{" ".join(command)} failed: {proc.stderr.strip()[-300:]}')


@pytest.fixture(scope='module')
def browser():
  _install_chromium()
  profile = tempfile.mkdtemp(prefix='chromium-profile-')
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in FLAGS + (f'--user-data-dir={profile}',):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()
  shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver, name):
  """A full-page PNG of the current tab under artifacts/screenshots/."""
  SCREENSHOTS.mkdir(parents=True, exist_ok=True)
  height = driver.execute_script('return document.documentElement.scrollHeight')
  driver.set_window_size(1280, max(900, min(int(height) + 40, 4000)))
  path = SCREENSHOTS / f'{name}.png'
  driver.save_screenshot(str(path))
  driver.set_window_size(1280, 1200)
  assert path.stat().st_size > 10_000
  return path


def _text(driver, elem_id):
  return driver.find_element(By.ID, elem_id).text


def _pick(driver, picker_id, index):
  thumbs = driver.find_elements(By.CSS_SELECTOR, f'#{picker_id} button.thumbnail-item')
  thumbs[index].click()
  return int(thumbs[index].text.split()[0].lstrip('#'))


def test_pages_and_a_zero_shot_prediction_by_clicking(browser, server, tmp_path):
  wait = WebDriverWait(browser, 60)
  browser.get(server.url)
  wait.until(lambda d: d.find_elements(By.ID, 'zs-predict'))
  tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, 'button[role="tab"]')]
  assert tabs == ['Zero-shot prediction', 'Search by words', 'Similar images',
                  'Puppy algebra', 'About']

  # No image: a clear message in the page.
  browser.find_element(By.ID, 'zs-predict').click()
  wait.until(lambda d: 'upload an image or pick one' in d.find_element(By.TAG_NAME,
                                                                       'body').text)
  _screenshot(browser, 'zero_shot_error')
  for close in browser.find_elements(By.CSS_SELECTOR, '.toast-close'):
    close.click()

  # Pick a gallery image, predict: the library's labels appear.
  gallery_id = _pick(browser, 'zs-picker', 1)
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#zs-gid input').get_property(
      'value') == str(gallery_id))
  browser.find_element(By.ID, 'zs-predict').click()
  wait.until(lambda d: 'Top 5' in _text(d, 'zs-status'))
  searcher = server.backend.searcher
  want = searcher.labels(searcher.gallery['devise'][gallery_id], 'classes', 5)
  table = _text(browser, 'zs-table')
  assert all(w['label'] in table for w in want)
  assert f'gallery image #{gallery_id}' in _text(browser, 'zs-status')
  _screenshot(browser, 'zero_shot_gallery')

  # Upload a file: the gallery id goes back to -1 and the upload is what is predicted.
  upload = tmp_path / 'upload.png'
  PIL.Image.fromarray(server.backend.images.get(7)[..., 0], 'L').save(upload)
  browser.find_element(By.CSS_SELECTOR, '#zs-image input[type=file]').send_keys(str(upload))
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#zs-gid input').get_property(
      'value') == '-1')
  browser.find_element(By.ID, 'zs-predict').click()
  wait.until(lambda d: 'the uploaded image' in _text(d, 'zs-status'))
  vector = searcher.embed_images([server.backend.images.get(7)])[0][0]
  want = searcher.labels(vector, 'classes', 5)
  rows = _text(browser, 'zs-table').splitlines()
  assert rows.index(want[0]['label']) < rows.index(want[1]['label'])
  _screenshot(browser, 'zero_shot')

  browser.find_element(By.XPATH, "//button[@role='tab'][.='Search by words']").click()
  wait.until(lambda d: d.find_element(By.ID, 'sw-search').is_displayed())
  browser.find_element(By.ID, 'sw-search').click()
  wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#sw-grid img')) >= 8)
  assert 'boot' in _text(browser, 'sw-status')
  _screenshot(browser, 'search_words')

  browser.find_element(By.XPATH, "//button[@role='tab'][.='Similar images']").click()
  wait.until(lambda d: d.find_element(By.ID, 'si-find').is_displayed())
  gallery_id = _pick(browser, 'si-picker', 4)
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#si-gid input').get_property(
      'value') == str(gallery_id))
  browser.find_element(By.ID, 'si-find').click()
  wait.until(lambda d: f'#{gallery_id}' in _text(d, 'si-status'))
  _screenshot(browser, 'similar')

  browser.find_element(By.XPATH, "//button[@role='tab'][.='Puppy algebra']").click()
  wait.until(lambda d: d.find_element(By.ID, 'al-compute').is_displayed())
  first = _pick(browser, 'al-picker', 0)
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#al-gid-1 input').get_property(
      'value') == str(first))
  second = _pick(browser, 'al-picker', 8)  # Goes into slot 2 (sign '-').
  wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#al-gid-2 input').get_property(
      'value') == str(second))
  browser.find_element(By.ID, 'al-compute').click()
  wait.until(lambda d: 'nearest' in _text(d, 'al-status'))
  wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#al-inputs img')) == 2)
  assert f'#{first}' in _text(browser, 'al-status')
  _screenshot(browser, 'algebra')

  browser.find_element(By.XPATH, "//button[@role='tab'][.='About']").click()
  wait.until(lambda d: 'params SHA-256' in d.find_element(By.TAG_NAME, 'body').text)
  _screenshot(browser, 'about')
