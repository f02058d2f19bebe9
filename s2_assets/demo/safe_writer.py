"""Writes one synthetic SAFE folder from a scene: the real layout and file names, lossless
JPEG2000 bands and QI masks on the tile's UTM grid, the product and tile metadata XML (cloud
cover, baseline, radiometric offsets before and after 04.00) and the manifest with checksums.

``s2_assets.demo.products.build_safe`` is the entry point; this module is its machinery.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from s2_assets.demo.scene import Scene, decimate
from s2_assets.products import BAND_IDS, NATIVE_RESOLUTION, ProductName, tile_epsg

L2A_LAYERS = {
    10: ("B02", "B03", "B04", "B08", "AOT", "WVP", "TCI"),
    20: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "AOT", "WVP", "SCL", "TCI"),
    60: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12", "AOT", "WVP", "SCL", "TCI"),
}  # fmt: skip
L1C_BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)

# Where each real tile's upper-left corner is would be read from MTD_TL.xml; for synthetic
# tiles any 100 km-aligned corner inside the zone is as good.
_UL_X = 300000.0


class SafeWriter:
    """Writes one SAFE folder; collects the file list for the manifest."""

    def __init__(self, root: Path, name: ProductName, scene: Scene) -> None:
        self.root = root
        self.name = name
        self.scene = scene
        self.size = scene.classes.shape[0]
        self.offset = -1000 if name.baseline is not None and float(name.baseline) >= 4 else 0
        self.epsg = tile_epsg(name.tile or "")
        self.ul_y = 7_800_040.0 if self.epsg > 32700 else 4_000_020.0
        # Synthetic DN = reflectance x 10000 - offset (offset is negative from 04.00 on).
        self.dn_offset = -self.offset
        stamp = name.sensing.strftime("%Y%m%dT%H%M%S")
        self.granule = f"{name.level}_T{name.tile}_A{30000 + name.relative_orbit:06d}_{stamp}"
        self.prefix = f"T{name.tile}_{stamp}"
        self.image_files: list[str] = []

    def write(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        granule = self.root / "GRANULE" / self.granule
        for sub in ("IMG_DATA", "QI_DATA", "AUX_DATA"):
            (granule / sub).mkdir(parents=True)
        if self.name.level == "L1C":
            self._write_l1c_images(granule)
        else:
            self._write_l2a_images(granule)
        self._write_qi(granule / "QI_DATA")
        self._write_text(granule / "MTD_TL.xml", self._tile_xml())
        ds = self.root / "DATASTRIP" / f"DS_2BPS_{self.name.discriminator}_S{self.prefix[7:]}"
        (ds / "QI_DATA").mkdir(parents=True)
        self._write_text(ds / "MTD_DS.xml", "<Level-1C_DataStrip_ID/>\n")
        self._write_text(self.root / f"MTD_MSI{self.name.level}.xml", self._product_xml())
        self._write_text(self.root / "INSPIRE.xml", "<gmd:MD_Metadata/>\n")
        self._write_text(self.root / "manifest.safe", self._manifest())

    def _transform(self, resolution: int) -> rasterio.Affine:
        return from_origin(_UL_X, self.ul_y, resolution, resolution)

    def _write_jp2(self, path: Path, data: np.ndarray, resolution: int) -> None:
        bands = data if data.ndim == 3 else data[np.newaxis]
        profile = {
            "driver": "JP2OpenJPEG",
            "width": bands.shape[2],
            "height": bands.shape[1],
            "count": bands.shape[0],
            "dtype": bands.dtype,
            "crs": CRS.from_epsg(self.epsg),
            "transform": self._transform(resolution),
            "QUALITY": 100,
            "REVERSIBLE": "YES",
            "YCBCR420": "NO",
        }
        if bands.shape[1] > 1024:
            profile.update(BLOCKXSIZE=1024, BLOCKYSIZE=1024)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(bands)
        for sidecar in path.parent.glob(f"{path.name}.aux.xml"):
            sidecar.unlink()

    def _image(self, folder: Path, stem: str, data: np.ndarray, resolution: int) -> None:
        self._write_jp2(folder / f"{stem}.jp2", data, resolution)
        self.image_files.append((folder / stem).relative_to(self.root).as_posix())

    def _tci(self, factor: int) -> np.ndarray:
        rgb = [self.scene.band(b, level=self.name.level, offset=self.dn_offset, factor=factor)
               for b in ("B04", "B03", "B02")]  # fmt: skip
        return np.stack(
            [np.clip((b.astype(np.int32) - self.dn_offset) / 10, 0, 255) for b in rgb]
        ).astype(np.uint8)

    def _write_l1c_images(self, granule: Path) -> None:
        folder = granule / "IMG_DATA"
        for band in L1C_BANDS:
            resolution = NATIVE_RESOLUTION[band]
            data = self.scene.band(
                band, level="L1C", offset=self.dn_offset, factor=resolution // 10
            )
            self._image(folder, f"{self.prefix}_{band}", data, resolution)
        self._image(folder, f"{self.prefix}_TCI", self._tci(1), 10)

    def _write_l2a_images(self, granule: Path) -> None:
        for resolution, layers in L2A_LAYERS.items():
            folder = granule / "IMG_DATA" / f"R{resolution}m"
            folder.mkdir(parents=True)
            factor = resolution // 10
            for layer in layers:
                if layer == "SCL":
                    data = decimate(self.scene.scl, factor, mean=False)
                elif layer == "TCI":
                    data = self._tci(factor)
                elif layer in ("AOT", "WVP"):
                    data = np.full(
                        (self.size // factor,) * 2, 150 if layer == "AOT" else 1800, np.uint16
                    )
                else:
                    data = self.scene.band(layer, level="L2A", offset=self.dn_offset, factor=factor)
                self._image(folder, f"{self.prefix}_{layer}_{resolution}m", data, resolution)

    def _write_qi(self, folder: Path) -> None:
        if self.offset:  # raster masks replaced the GML ones at baseline 04.00
            cloud = decimate(np.isin(self.scene.scl, (8, 9)).astype(np.uint8), 6, mean=False)
            cirrus = decimate((self.scene.scl == 10).astype(np.uint8), 6, mean=False)
            snow = decimate((self.scene.scl == 11).astype(np.uint8), 6, mean=False)
            self._write_jp2(folder / "MSK_CLASSI_B00.jp2", np.stack([cloud, cirrus, snow]), 60)
        if self.name.level == "L2A":
            for resolution in (20, 60):
                factor = resolution // 10
                probability = decimate(self.scene.cloud_probability, factor, mean=False)
                self._write_jp2(folder / f"MSK_CLDPRB_{resolution}m.jp2", probability, resolution)
                snow = (decimate(self.scene.scl, factor, mean=False) == 11).astype(np.uint8) * 90
                self._write_jp2(folder / f"MSK_SNWPRB_{resolution}m.jp2", snow, resolution)

    def _write_text(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def _footprint(self) -> str:
        extent = self.size * 10
        xs = [_UL_X, _UL_X + extent, _UL_X + extent, _UL_X, _UL_X]
        ys = [self.ul_y, self.ul_y, self.ul_y - extent, self.ul_y - extent, self.ul_y]
        lons, lats = warp_transform(CRS.from_epsg(self.epsg), CRS.from_epsg(4326), xs, ys)
        return " ".join(f"{lat:.6f} {lon:.6f}" for lat, lon in zip(lats, lons, strict=True))

    def _product_xml(self) -> str:
        n = self.name
        l2a = n.level == "L2A"
        kind = "2A" if l2a else "1C"
        start = n.sensing.strftime("%Y-%m-%dT%H:%M:%S.024Z")
        generated = datetime.strptime(n.discriminator, "%Y%m%dT%H%M%S").strftime(
            "%Y-%m-%dT%H:%M:%S.000000Z"
        )
        images = "\n".join(
            f"          <IMAGE_FILE>{escape(f)}</IMAGE_FILE>" for f in self.image_files
        )
        if self.offset:
            tag = "BOA_ADD_OFFSET" if l2a else "RADIO_ADD_OFFSET"
            entries = "".join(
                f'<{tag} band_id="{i}">{self.offset}</{tag}>' for i in sorted(BAND_IDS.values())
            )
            offsets = (f"<BOA_ADD_OFFSET_VALUES_LIST>{entries}</BOA_ADD_OFFSET_VALUES_LIST>" if l2a
                       else f"<Radiometric_Offset_List>{entries}</Radiometric_Offset_List>")  # fmt: skip
        else:
            offsets = ""
        quant = ("<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit=\"none\">10000</BOA_QUANTIFICATION_VALUE>"
                 "<AOT_QUANTIFICATION_VALUE unit=\"none\">1000.0</AOT_QUANTIFICATION_VALUE>"
                 "<WVP_QUANTIFICATION_VALUE unit=\"cm\">1000.0</WVP_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>"
                 if l2a else "<QUANTIFICATION_VALUE unit=\"none\">10000</QUANTIFICATION_VALUE>")  # fmt: skip
        spacecraft = f"Sentinel-2{n.mission[-1]}"
        cloud = f"{self.scene.cloud_fraction:.6f}"
        content_qi = (f"<Image_Content_QI><NODATA_PIXEL_PERCENTAGE>{self.scene.nodata.mean() * 100:.6f}</NODATA_PIXEL_PERCENTAGE>"
                      f"<CLOUD_SHADOW_PERCENTAGE>{(self.scene.scl == 3).mean() * 100:.6f}</CLOUD_SHADOW_PERCENTAGE>"
                      f"<VEGETATION_PERCENTAGE>{(self.scene.scl == 4).mean() * 100:.6f}</VEGETATION_PERCENTAGE>"
                      f"<WATER_PERCENTAGE>{(self.scene.scl == 6).mean() * 100:.6f}</WATER_PERCENTAGE>"
                      f"<THIN_CIRRUS_PERCENTAGE>{(self.scene.scl == 10).mean() * 100:.6f}</THIN_CIRRUS_PERCENTAGE>"
                      f"<SNOW_ICE_PERCENTAGE>{(self.scene.scl == 11).mean() * 100:.6f}</SNOW_ICE_PERCENTAGE>"
                      "</Image_Content_QI>") if l2a else ""  # fmt: skip
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{kind}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{kind}.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{kind}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{start}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{n.safe_name}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{kind}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{kind}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{n.baseline}</PROCESSING_BASELINE>
      <PRODUCT_DOI>https://doi.org/10.5270/S2_-synthetic</PRODUCT_DOI>
      <GENERATION_TIME>{generated}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="GS2{n.mission[-1]}_{n.sensing:%Y%m%dT%H%M%S}_000000_N{(n.baseline or "").replace(".", "")}">
        <SPACECRAFT_NAME>{spacecraft}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{start}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{n.relative_orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="S2{n.mission[-1]}_OPER_MSI_L{kind}_DS_2BPS_{n.discriminator}_S{n.sensing:%Y%m%dT%H%M%S}_N{(n.baseline or "").replace(".", "")}" granuleIdentifier="S2{n.mission[-1]}_OPER_MSI_L{kind}_TL_2BPS_{n.discriminator}_A{30000 + n.relative_orbit:06d}_T{n.tile}_N{(n.baseline or "").replace(".", "")}" imageFormat="JPEG2000">
{images}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>
      <Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>
      {quant}
      {offsets}
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Product_Footprint><Product_Footprint><Global_Footprint><EXT_POS_LIST>{self._footprint()}</EXT_POS_LIST></Global_Footprint></Product_Footprint><RASTER_CS_TYPE>POINT</RASTER_CS_TYPE><PIXEL_ORIGIN>1</PIXEL_ORIGIN></Product_Footprint>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud}</Cloud_Coverage_Assessment>
    <Technical_Quality_Assessment><DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE></Technical_Quality_Assessment>
    {content_qi}
  </n1:Quality_Indicators_Info>
</n1:Level-{kind}_User_Product>
"""

    def _tile_xml(self) -> str:
        n = self.name
        zone = self.epsg % 100
        hemisphere = "S" if self.epsg > 32700 else "N"
        sizes = "".join(
            f'<Size resolution="{r}"><NROWS>{self.size * 10 // r}</NROWS><NCOLS>{self.size * 10 // r}</NCOLS></Size>'
            for r in (10, 20, 60)
        )
        positions = "".join(
            f'<Geoposition resolution="{r}"><ULX>{_UL_X:.0f}</ULX><ULY>{self.ul_y:.0f}</ULY><XDIM>{r}</XDIM><YDIM>-{r}</YDIM></Geoposition>'
            for r in (10, 20, 60)
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{n.level[1:]}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{n.level[1:]}_Tile_Metadata.xsd">
  <n1:General_Info><TILE_ID>{self.granule}</TILE_ID><SENSING_TIME>{n.sensing:%Y-%m-%dT%H:%M:%S.024Z}</SENSING_TIME></n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding>
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone {zone}{hemisphere}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{self.epsg}</HORIZONTAL_CS_CODE>
      {sizes}
      {positions}
    </Tile_Geocoding>
    <Tile_Angles><Mean_Sun_Angle><ZENITH_ANGLE unit="deg">35.1</ZENITH_ANGLE><AZIMUTH_ANGLE unit="deg">60.2</AZIMUTH_ANGLE></Mean_Sun_Angle></Tile_Angles>
  </n1:Geometric_Info>
</n1:Level-{n.level[1:]}_Tile_ID>
"""

    def _manifest(self) -> str:
        entries = []
        for index, path in enumerate(sorted(p for p in self.root.rglob("*") if p.is_file())):
            digest = hashlib.sha3_256(path.read_bytes()).hexdigest()
            href = path.relative_to(self.root).as_posix()
            entries.append(
                f'    <dataObject ID="obj{index}"><byteStream mimeType="application/octet-stream" '
                f'size="{path.stat().st_size}"><fileLocation locatorType="URL" href="./{escape(href)}"/>'
                f'<checksum checksumName="SHA3-256">{digest}</checksum></byteStream></dataObject>'
            )
        body = "\n".join(entries)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1/sentinel-2/msi">\n'
            f"  <dataObjectSection>\n{body}\n  </dataObjectSection>\n</xfdu:XFDU>\n"
        )
