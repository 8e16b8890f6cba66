"""The road classes: what avssm's detectors predict by default and what `avssm generate-data` draws."""

ROAD_CLASSES = ("car", "truck", "pedestrian", "cyclist", "traffic_sign", "traffic_light")
