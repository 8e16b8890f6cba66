/* avssm_infer from C: detect ENGINE FRAME.bgr WIDTH HEIGHT (a raw 8-bit BGR frame), print the detections. */
#include <avssm/infer.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
    if (argc != 5) return fprintf(stderr, "usage: %s ENGINE FRAME.bgr WIDTH HEIGHT\n", argv[0]), 2;
    int32_t const width = atoi(argv[3]), height = atoi(argv[4]);
    unsigned char* pixels = calloc((size_t)width * height * 3 + 1, 1);
    FILE* file = fopen(argv[2], "rb");
    if (!pixels || !file || fread(pixels, 3, (size_t)width * height, file) != (size_t)width * height)
        return fprintf(stderr, "%s: cannot read %dx%d BGR pixels\n", argv[2], width, height), 2;

    avssm_detector* detector = NULL;
    if (avssm_detector_open(argv[1], &detector) != AVSSM_OK) return fprintf(stderr, "%s\n", avssm_last_error()), 1;
    avssm_frame frame = {pixels, width, height, (int64_t)width * 3, AVSSM_PIXEL_BGR8, AVSSM_MEMORY_HOST};
    avssm_detection found[300];
    int32_t count = 0;
    if (avssm_detector_detect(detector, &frame, NULL, NULL, found, 300, &count) != AVSSM_OK)
        return fprintf(stderr, "%s\n", avssm_last_error()), 1;
    for (int32_t i = 0; i < count; ++i)
        printf("%s %.3f %.1f %.1f %.1f %.1f\n", avssm_detector_class_name(detector, found[i].label), found[i].score,
               found[i].x1, found[i].y1, found[i].x2, found[i].y2);
    avssm_detector_close(detector);
    return 0;
}
