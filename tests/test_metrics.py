import numpy as np

from harness.measure.evaluate import confusion_matrix
from harness.metrics import scores_from_confusion


def test_confusion_and_miou_match_a_hand_computed_case():
    target = np.array([[0, 0, 1], [1, 2, 9]])  # 9 = ignore
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    conf = confusion_matrix(pred, target, num_classes=3, ignore_index=9)
    # rows = truth, cols = prediction; the ignored pixel is not counted
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    scores = scores_from_confusion(conf)
    # IoU: class0 = 1/(1+1+0) = 0.5, class1 = 2/(2+1) = 2/3, class2 = 1/1
    assert np.isclose(scores.miou_pct, 100 * (0.5 + 2 / 3 + 1) / 3)
    assert np.isclose(scores.pixel_accuracy_pct, 100 * 4 / 5)
    assert np.allclose(scores.per_class_iou_pct, [50.0, 200 / 3, 100.0])


def test_class_absent_everywhere_is_left_out_of_the_mean():
    conf = confusion_matrix(np.array([0, 0]), np.array([0, 0]), num_classes=4, ignore_index=255)
    scores = scores_from_confusion(conf)
    assert scores.miou_pct == 100.0
    assert scores.per_class_iou_pct[1:] == (None, None, None)


def test_top1_and_per_class_precision_recall_match_a_hand_computed_case():
    from harness.metrics import classification_scores
    from harness.tasks import get_task

    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    conf = confusion_matrix(predicted, labels, num_classes=3, ignore_index=-1)
    assert conf.tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    top1, precision, recall = classification_scores(conf)
    assert np.isclose(top1, 100 * 4 / 6)
    # precision: class 0 = 2/2, class 1 = 2/4, class 2 never predicted; recall: 2/3, 2/2, 0/1
    assert precision[0] == 100.0 and precision[1] == 50.0 and precision[2] is None
    assert np.allclose(recall, [200 / 3, 100.0, 0.0])
    quality = get_task("classification").quality(conf)
    assert quality.metric == "top-1" and quality.per_class == "0: 100.0/66.7; 1: 50.0/100.0; 2: n/a/0.0"
    assert get_task("segmentation").quality(conf).metric == "mIoU"
